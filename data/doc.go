// Package data turns text into the token batches and records Sparrow trains on: the byte-level Tokenizer
// with the DeepSeek-V3.2 special tokens; the DeepSeek-V3.2 chat encoder and completion parser (Encode,
// EncodeForTraining, ParseCompletion; chat-format.md, dsv32-spec.md §4); the pre-training and SFT corpora
// (Corpus, OpenCorpus: synthetic generators such as ArithmeticGenerator, text and conversation files) with
// their train/held-out split (InSplit); the packers that fill fixed-shape Batches and resume exactly
// (Packer, DocPacker); and the RL trajectory record with its Arrow wire format (Trajectory, Group,
// EncodeGroup, DecodeGroup; architecture.md, "Trajectory record").
package data
