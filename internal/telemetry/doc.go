// Package telemetry exposes Sparrow's live state to Prometheus: a /metrics endpoint on the learner
// (`trainer run`, `trainer learn`) and on every rollout worker process (`trainer rollout`), switched on with
// --metrics-addr and off by default.
//
// Each process owns one Registry (never Prometheus's global one) with the Go runtime and process
// collectors and the families of its role, all named sparrow_*:
//
//	learner (Learner, fed by the trainer's metric records, trainer.Options.Observer):
//	  sparrow_learner_steps_total            counter  optimizer steps logged by this process
//	  sparrow_learner_policy_version         gauge    the newest policy version
//	  sparrow_learner_step_seconds           gauge    the last step's wall time (rollout + train)
//	  sparrow_learner_tokens_per_second      gauge    completion tokens (rl) or training tokens (lm) per second
//	  sparrow_learner_groups_per_second      gauge    groups collected per second of rollout
//	  sparrow_reward_mean                    gauge    mean reward of the last step's groups
//	  sparrow_reward_accuracy                gauge    fraction of correct completions
//	  sparrow_staleness_mean, _max           gauge    policy versions between sampling and training
//	  sparrow_rollout_live_workers           gauge    worker processes whose heartbeats are current
//	  sparrow_bus_queue_depth                gauge    prompts dispatched whose groups are not collected yet (live)
//	  sparrow_groups_dropped_total{reason}   counter  groups not trained on: failed, stale, invalid, shape, zero_std
//	  sparrow_bus_messages_total{kind}       counter  what the NATS learner terminated or counted: malformed,
//	                                                  invalid, forged, duplicate, failed, oversize, redelivered,
//	                                                  attention_mismatch
//	worker (Worker, read from the running process's counters, natsbus.WorkerProbe):
//	  sparrow_worker_groups_total            counter  groups published
//	  sparrow_worker_tokens_total            counter  completion tokens published
//	  sparrow_worker_policy_version          gauge    the version of the weights the workers sample with
//	  sparrow_worker_weight_swaps_total      counter  weight versions swapped in
//	  sparrow_worker_errors_total{kind}      counter  failed (sampling), oversize, malformed (prompts), weights
//	                                                  (a version not fetched or not installed)
//
// The learner's values come from the records written to metrics.jsonl, so they move at every logged step
// (run.log_every); the queue depth and all worker values are read when scraped.
//
// Serve binds the loopback interface unless told otherwise: an address without a host (":9090") binds
// 127.0.0.1, and a host that is not a loopback address ("0.0.0.0:9090", a machine's name or IP) is refused
// unless AllowRemote is set (the CLI's --metrics-allow-remote), because /metrics has no authentication.
package telemetry
