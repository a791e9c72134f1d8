// Loss aggregation over the tokens whose loss mask is 1, with the semantics of
// verl's agg_loss, normalised over the WHOLE batch: a Normalizer counts the
// sequences and tokens of every micro-batch first, and each micro-batch's loss
// is then a weighted token sum Σ_t w_t·x_t with those global counts, so the
// micro-batch losses and gradients add up exactly to the whole-batch ones.
//
//	seq-mean-token-mean      w_t = 1 / (S · n_i)     Eq. 8: token mean per sequence, then mean over sequences
//	token-mean               w_t = 1 / N             DAPO: all tokens of the batch weigh the same
//	seq-mean-token-sum       w_t = 1 / S             token sum per sequence, then mean over sequences
//	seq-mean-token-sum-norm  w_t = 1 / (S · MaxLen)  Dr.GRPO: token sum / a constant, then mean over sequences
//
// S = sequences of the whole batch with at least one loss token (fully masked
// sequences are excluded, as verl does), N = loss tokens of the whole batch,
// n_i = loss tokens of the token's own sequence i. When the batch has no loss
// token at all, every weight is 0 (verl returns a zero loss).

package grpo

import "fmt"

// AggMode names a loss aggregation.
type AggMode string

const (
	AggSeqMeanTokenMean    AggMode = "seq-mean-token-mean"
	AggTokenMean           AggMode = "token-mean"
	AggSeqMeanTokenSum     AggMode = "seq-mean-token-sum"
	AggSeqMeanTokenSumNorm AggMode = "seq-mean-token-sum-norm"
)

// ParseAgg checks an aggregation name.
func ParseAgg(s string) (AggMode, error) {
	switch m := AggMode(s); m {
	case AggSeqMeanTokenMean, AggTokenMean, AggSeqMeanTokenSum, AggSeqMeanTokenSumNorm:
		return m, nil
	}
	return "", fmt.Errorf("grpo: agg %q: want one of seq-mean-token-mean, token-mean, seq-mean-token-sum, seq-mean-token-sum-norm", s)
}

// Normalizer holds the global normalisers of one batch: fill it with Add for
// every micro-batch of the batch (or NormalizerOf) before computing any loss.
type Normalizer struct {
	Seqs   int // sequences with at least one loss token, whole batch
	Tokens int // loss tokens, whole batch
}

// Add counts the sequences and loss tokens of one micro-batch.
func (n *Normalizer) Add(l Layout) error {
	if err := l.validate(); err != nil {
		return err
	}
	for _, c := range l.seqTokens() {
		if c > 0 {
			n.Seqs++
			n.Tokens += c
		}
	}
	return nil
}

// NormalizerOf returns the normalisers of the batch made of the given
// micro-batches.
func NormalizerOf(ls ...Layout) (Normalizer, error) {
	var n Normalizer
	for i, l := range ls {
		if err := n.Add(l); err != nil {
			return Normalizer{}, fmt.Errorf("micro-batch %d: %w", i, err)
		}
	}
	return n, nil
}

// Aggregator turns per-token values into one scalar.
type Aggregator struct {
	Mode   AggMode
	Norm   Normalizer // of the whole batch
	MaxLen int        // the constant of seq-mean-token-sum-norm (> 0 there)
}

// Weights returns w with Σ_t w[t]·x[t] the aggregate of per-token values x of
// the micro-batch l; w[t] is also ∂aggregate/∂x[t]. w[t] = 0 where LossMask is 0.
// It fails when the micro-batch holds more sequences or tokens than the
// normaliser counted (a normaliser from another batch).
func (a Aggregator) Weights(l Layout) ([]float64, error) {
	if _, err := ParseAgg(string(a.Mode)); err != nil {
		return nil, err
	}
	if a.Mode == AggSeqMeanTokenSumNorm && a.MaxLen <= 0 {
		return nil, fmt.Errorf("grpo: agg %s: max_len %d: must be > 0", a.Mode, a.MaxLen)
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	n := l.seqTokens()
	var own Normalizer
	for _, c := range n {
		if c > 0 {
			own.Seqs++
			own.Tokens += c
		}
	}
	if own.Seqs > a.Norm.Seqs || own.Tokens > a.Norm.Tokens {
		return nil, fmt.Errorf("grpo: agg: micro-batch has %d sequences / %d loss tokens, more than the batch normaliser's %d / %d (normaliser from another batch?)",
			own.Seqs, own.Tokens, a.Norm.Seqs, a.Norm.Tokens)
	}
	w := make([]float64, len(l.Seq))
	if a.Norm.Tokens == 0 {
		return w, nil
	}
	S, N := float64(a.Norm.Seqs), float64(a.Norm.Tokens)
	for t, s := range l.Seq {
		if l.LossMask[t] == 0 {
			continue
		}
		switch a.Mode {
		case AggSeqMeanTokenMean:
			w[t] = 1 / (S * float64(n[s]))
		case AggTokenMean:
			w[t] = 1 / N
		case AggSeqMeanTokenSum:
			w[t] = 1 / S
		case AggSeqMeanTokenSumNorm:
			w[t] = 1 / (S * float64(a.MaxLen))
		}
	}
	return w, nil
}

// Aggregate returns Σ_t w[t]·x[t] over the micro-batch l and the weights w (see
// Weights). Values of x at LossMask 0 are not read.
func (a Aggregator) Aggregate(l Layout, x []float64) (float64, []float64, error) {
	w, err := a.Weights(l)
	if err != nil {
		return 0, nil, err
	}
	if err := l.checkTokens("x", x); err != nil {
		return 0, nil, err
	}
	var sum float64
	for t, wt := range w {
		if wt != 0 {
			sum += wt * x[t]
		}
	}
	return sum, w, nil
}
