// Package checkpoints saves and loads Sparrow checkpoints: directories that Hugging Face tooling reads
// (model.safetensors, config.json, generation_config.json, tokenizer.json) plus what exact resume needs
// (trainer_state.json, optimizer.safetensors), sealed by manifest.json. Save and Load are the entry points
// (Checkpoint; LoadParams for the weights alone); Latest, List and Prune manage a checkpoints directory, and
// CopyRounded gives the rollout engine the bf16/f16-rounded weights an inference server would see. The
// layout follows architecture.md ("Run directory") and the Hugging Face conventions of dsv32-spec.md §8;
// the safetensors reader and writer are hand-written.
package checkpoints
