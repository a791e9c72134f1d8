// round.go rounds a model's weights to a narrower storage dtype and back to float32, as an inference engine
// that serves bfloat16 (or float16) weights sees them: rl.rollout_dtype uses it to give the rollout engine
// the weights of a bf16 server while the learner keeps its float32 master copy.

package checkpoints

import (
	"fmt"

	"github.com/sparrow-rl/sparrow/model"
)

// RoundTo returns x rounded to dtype (F32: unchanged; BF16, F16: to nearest, ties to even) as float32.
func RoundTo(x float32, dtype DType) float32 {
	switch dtype {
	case BF16:
		return BF16ToF32(F32ToBF16(x))
	case F16:
		return F16ToF32(F32ToF16(x))
	}
	return x
}

// CopyRounded copies every tensor of src into dst rounded to dtype (F32, F16 or BF16). The two must hold the
// same tensors (names and sizes), as two Params of one config do.
func CopyRounded(dst, src *model.Params, dtype DType) error {
	if dtype != F32 && dtype != F16 && dtype != BF16 {
		return fmt.Errorf("checkpoints: cannot round weights to %s (want F32, F16 or BF16)", dtype)
	}
	if len(dst.Specs) != len(src.Specs) {
		return fmt.Errorf("checkpoints: rounding %d tensors into %d", len(src.Specs), len(dst.Specs))
	}
	for i, s := range src.Data {
		if dst.Specs[i].Name != src.Specs[i].Name || len(dst.Data[i]) != len(s) {
			return fmt.Errorf("checkpoints: rounding tensor %s into %s of another shape", src.Specs[i].Name, dst.Specs[i].Name)
		}
		d := dst.Data[i]
		for j, v := range s {
			d[j] = RoundTo(v, dtype)
		}
	}
	return nil
}

// RolloutDType maps rl.rollout_dtype (float32, bfloat16) to the dtype CopyRounded rounds to.
func RolloutDType(name string) (DType, error) {
	switch name {
	case "", "float32":
		return F32, nil
	case "bfloat16":
		return BF16, nil
	}
	return "", fmt.Errorf("rl.rollout_dtype %q: want float32 or bfloat16", name)
}
