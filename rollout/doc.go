// Package rollout produces the groups GRPO learns from: the sampler (temperature, top-k, top-p, recording
// the kept set and the log-probability of the distribution actually sampled, π_old), group sampling from
// the inference engine with the MoE experts and DSA selections recorded for Keep Routing and Keep Selection
// (GroupSampler, decoding many completions per engine step with continuous batching across groups), the one
// worker loop (Worker, with the Gate over versioned weights), and the transport
// between the learner and the workers, one interface per side (LearnerTransport, WorkerTransport; InProc in
// one process, package natsbus across machines). dsv32-spec.md §3.2.
package rollout
