// engine_fork.go: copying a session, so that the G samples of a group share one prefill of their prompt.

package model

import "fmt"

// CopyFrom makes s a copy of o's state (caches up to o.Len — the indexer keys too for sparse sessions —, last
// logits, experts and selections). Both must come from the same engine with the same attention (dense, or
// sparse of the same top-k), and s must hold at least o.Len positions.
func (s *Session) CopyFrom(o *Session) error {
	if s.e != o.e || s.TopK != o.TopK || s.MaxLen < o.Len {
		return fmt.Errorf("engine: copying a session of top-k %d and %d positions into one of top-k %d and length %d (or of another engine)", o.TopK, o.Len, s.TopK, s.MaxLen)
	}
	c := s.e.Cfg
	for l := range s.latent {
		copy(s.latent[l][:o.Len*c.KVLoraRank], o.latent[l][:o.Len*c.KVLoraRank])
		copy(s.krope[l][:o.Len*c.QKRopeHeadDim], o.krope[l][:o.Len*c.QKRopeHeadDim])
		if s.Experts[l] != nil {
			copy(s.Experts[l], o.Experts[l])
		}
		if s.TopK > 0 {
			dh := s.dims.Dh
			copy(s.ikeys[l][:o.Len*dh], o.ikeys[l][:o.Len*dh])
			copy(s.Selected[l], o.Selected[l])
		}
	}
	copy(s.Margins, o.Margins)
	copy(s.Logits, o.Logits)
	s.Len = o.Len
	return nil
}
