// Package envs holds Sparrow's task environments for reinforcement learning with verifiable rewards. A
// Family, built by name from the registry (New, Register, Names), is a seeded generator of Tasks with
// disjoint train and held-out splits, a verifier that scores a completion (Reward: correctness, format,
// length penalty) and a renderer of worked solutions, so the same family is both an RL environment
// and a pre-training / SFT corpus (Generator, TrainingIDs). Families shipped: math, logic, code (a tiny
// sandboxed language), dataset (JSONL or Parquet), and the long-context retrieval tasks kvretrieval and
// needle (RULER-style) used by the DSA recipe. Prompts use the DeepSeek-V3.2 chat format in thinking mode
// (dsv32-spec.md §4) through package data.
package envs
