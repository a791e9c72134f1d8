// Package natsbus carries the rollout transport over NATS JetStream (docs/architecture.md, "Scaling out"):
// prompts travel to rollout workers through a work-queue stream, finished groups travel back to the learner
// on a trajectory stream (one Arrow IPC + zstd message per group, data.EncodeGroup), and weights travel out
// through a NATS Object Store (or S3, rl.bus.weights s3) with a small notification message. Learner is the
// learner's side (rollout.LearnerTransport) and WorkerClient a worker's (rollout.WorkerTransport); the
// weight sync is WeightPublisher and WeightFetcher, a worker process is RunWorkers (rollout.Worker loops
// behind a rollout.Gate), Lease is the learner lease (one learner per run and stage, a KV entry renewed by
// compare-and-set), and StartEmbedded runs a loopback server with JetStream for local runs and tests.
// Every job carries a token only its worker can echo, so no other client can report on a group or occupy
// its de-duplication slot (auth.go); deploy/nats/sparrow-roles.conf gives each side least-privilege rights.
package natsbus
