// Package model is the DeepSeek-V3.2 decoder at small scale (dsv32-spec.md §0, §1.3, §5, §8): token
// embedding, RMSNorm, MLA attention with decoupled RoPE, SwiGLU FFN and DeepSeek-V3 MoE, final norm and
// untied LM head, with DeepSeek Sparse Attention (package dsa) as an option. Params holds the weights under
// their Hugging Face names; Graph (NewGraph) is the training graph on gorgonia, built from fused kernels
// with hand-written backward passes, with the DSA indexer losses and the GRPO policy head (PolicyLoss); an lm
// graph runs its batch rows as data-parallel shards, one per core (shards.go);
// Engine (NewEngine, NewSession, NewDSASession, NewBatch) is the inference engine: batched prefill, and decode
// of one token for each of many sequences per step (Batch.Step; Session.Step is a batch of one) over their
// MLA latent caches in the absorbed MQA mode, dense or DSA, recording expert ids (Keep Routing) and DSA
// selections for replay in training.
package model
