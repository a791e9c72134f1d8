// Package dsa is DeepSeek Sparse Attention (dsv32-spec.md §1, §2; DeepSeek-V3.2 §2.1): the lightning
// indexer (Indexer), top-k key selection (SelectTopK), MLA attention in the absorbed MQA mode restricted to
// the selected keys (SparseMQA; forward and backward touch only those keys), and the two indexer losses of
// the continued pre-training that installs DSA (KLDense, Eq. 3, dense warm-up; KLSparse, Eq. 4, sparse
// stage) with the top-k recall metrics (TopKRecall). Every kernel is generic over float32 (training,
// inference) and float64 (finite-difference checks) and uses only internal/kernels; package model wraps
// them as gorgonia ops and uses them in its decoder.
package dsa
