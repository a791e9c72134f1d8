// dsa.go: the `dsa:` section, read by the DeepSeek Sparse Attention stages (kinds dsa_warmup and dsa_sparse,
// dsv32-spec.md §2). The warm-up's learning rate and step budget are the stage's own optimizer and train
// sections; this section holds what those sections cannot say: the sparse stage's separate indexer optimizer,
// the weight of the indexer loss, the k of the recall metrics and the long-context task evaluated.

package configs

// KVRetrievalKinds are the values data.ops may list with data.generator kvretrieval (its question kinds).
var KVRetrievalKinds = []string{"single", "multihop"}

// DSA configures the DSA stages.
type DSA struct {
	IndexerLR  float64 `yaml:"indexer_lr"`  // dsa_sparse: peak lr of the indexer's own AdamW (same schedule shape), default 1e-3
	LossWeight float64 `yaml:"loss_weight"` // weight of the indexer KL loss (mean per query, summed over layers), default 1
	RecallTopK int     `yaml:"recall_topk"` // k of dsa/topk_recall; 0 = model.index_topk
	EvalEnv    string  `yaml:"eval_env"`    // task family whose held-out accuracy is measured at each eval; "" = none
	EvalTasks  int     `yaml:"eval_tasks"`  // tasks per accuracy evaluation, default 16
}

// DefaultDSA returns the defaults of the dsa section.
func DefaultDSA() DSA { return DSA{IndexerLR: 1e-3, LossWeight: 1, EvalTasks: 16} }

func validateDSA(k *checker, d *DSA) {
	k.positive("dsa.indexer_lr", d.IndexerLR)
	k.nonNeg("dsa.loss_weight", d.LossWeight)
	k.nonNegInt("dsa.recall_topk", d.RecallTopK)
	k.nonNegInt("dsa.eval_tasks", d.EvalTasks)
}
