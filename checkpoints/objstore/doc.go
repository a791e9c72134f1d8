// Package objstore moves Sparrow checkpoints to and from S3-compatible object storage, laid out as
// s3://bucket/prefix/<checkpoint>/<file> plus a latest object (URL, ParseURL). Export uploads a local
// checkpoint so that readers only ever see complete ones (data files first, manifest.json last, then
// latest); Import and Resolve bring one into a local cache and verify it; PruneRemote applies
// checkpoints.Prune's retention rule to a remote run; Uploader exports in the background during a run.
// Store (New, NewFromEnv, Config) holds the endpoint, credentials and retry policy, and also serves single
// objects (PutBytes, GetBytes, Remove) to the rollout weight sync.
package objstore
