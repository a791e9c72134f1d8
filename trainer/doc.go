// Package trainer runs Sparrow's training pipelines (docs/architecture.md): a run directory and a list of
// stages (Execute), each stage kind a type driven by the one stage loop (runLoop: steps, metrics, evaluation
// cadence, checkpoints, exact resume, SIGINT/SIGTERM) — pretrain and sft (next-token loss), dsa_warmup and
// dsa_sparse (DeepSeek Sparse Attention, dsv32-spec.md §2), and rl (GRPO the DeepSeek-V3.2 way, §3.2, with
// its rollout workers in-process or over NATS). Around them: AdamW, schedules and clipping, the metric sinks
// (metrics.jsonl, TensorBoard, plots), and checkpoint evaluation (Evaluate, EvaluateTasks) for `trainer eval`.
package trainer
