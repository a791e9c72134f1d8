// Package bench measures Sparrow's speed: sgemm rates, a full training step, greedy decoding, dense against
// sparse (DSA) attention, GRPO rollout with the learner's step, and the rollout bus's transport. Every
// benchmark runs on a recipe's model with random weights and synthetic or sampled data, and reports medians
// with the context (BLAS backend, threads, load) they were taken in. Benchmark recipes that pin a published
// comparison (v32-issue19) are embedded from recipes/. The CLI's `trainer bench` subcommands
// (cmd/trainer) call it and print its results as tables or JSON.
package bench
