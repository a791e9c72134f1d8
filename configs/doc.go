// Package configs is Sparrow's configuration: the typed schema of a training recipe (Config: a list of
// Stages run in order over shared data/optimizer/schedule/train sections, plus the model, checkpoint, run,
// rl and dsa sections), its defaults (Default), strict YAML decoding with `--set a.b.c=value` overrides
// (Parse, Load), validation whose errors name the key and the file line or override that set it (KeyError),
// and the recipes shipped with the binary (Recipes). The model section uses the Hugging Face config.json
// keys of DeepSeek-V3.2 (dsv32-spec.md §0, §8); the rl and dsa sections hold the settings of the GRPO stage
// (§3.2) and of the DSA stages (§2).
package configs
