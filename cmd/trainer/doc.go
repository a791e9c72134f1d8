// Command trainer is Sparrow's CLI. `trainer run CONFIG` runs a recipe's pipeline of training stages
// (pretrain, sft, dsa_warmup, dsa_sparse, rl) in one process; `learn` and `rollout` run the RL stage as a
// learner and rollout workers talking over NATS; `eval` evaluates a checkpoint; `sample` prints a
// checkpoint's completions of a task or a prompt as a person reads them; `export` uploads a checkpoint to
// S3-compatible object storage; `bench` measures GEMM, training steps, decoding, dense against sparse
// attention, rollout and transport; `chat` encodes and parses the DeepSeek-V3.2 chat format; `version`
// prints the build. Each command is a thin call into a package (trainer, configs, checkpoints, data).
package main
