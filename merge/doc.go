// Package merge holds weight-space merges of models fine-tuned from one base, as pure float32/float64
// functions over flat tensors: the plain average (model soup; Wortsman et al. 2022, arXiv:2203.05482), task
// arithmetic (Ilharco et al. 2023, arXiv:2212.04089) and TIES-merging (Yadav et al. 2023,
// arXiv:2306.01708). They are the baselines a distillation of specialists must beat (`trainer merge`).
// It imports only the standard library.
package merge
