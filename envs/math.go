// math.go implements the math family: multi-digit addition, subtraction and multiplication. The prompt is
// the problem ("347+589=?"), the worked solution is data's column arithmetic (data.ArithmeticProblem: column
// addition with carries, subtraction with borrows, long multiplication), and the answer is the integer after
// "</think>". Task IDs are data's arithmetic keys ("347+589"), so the math family and the arithmetic corpus
// hold out the same problems.
//
// Params (all optional):
//
//	ops           comma list of + - * (default "+,-,*"; a repeated operator is drawn more often)
//	digits        most digits of an operand of + and - (default 3, 1..18)
//	mul_digits_a  most digits of the first operand of * (default digits)
//	mul_digits_b  most digits of the second operand of * (default digits)
//	style         worked-solution style: plain (default), placed (operands restated digit by digit with
//	              their places, each column step labelled with its place; see data.ArithmeticProblemPlaced) or
//	              atomic (placed, every step one fact of two operands; see data.StyleAtomic)
//
// Operands are drawn as data's generator draws them: the digit count uniform in 1..max, then the digits
// uniform without a leading zero. The recipe's mix "+ and - up to 3 digits, 3-digit × 1-digit" is
// {digits: 3, mul_digits_a: 3, mul_digits_b: 1}.
//
// The verifier parses the answer as an integer, ignoring white space anywhere and one leading '+';
// anything else (words, a trailing period, several numbers) is wrong.
//
// FlawedSolution writes the same kind of worked solution with every carry and borrow dropped (a column's
// digit sum is written mod 10 and nothing is carried; a column whose top digit is smaller subtracts the
// other way round; in every style the flawed work is the placed or plain one, so in the atomic style its
// steps are the two-operand facts the right work uses too), the systematic error a pre-training corpus mixes
// in so that RL has a wrong procedure to select against.

package envs

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sparrow-rl/sparrow/data"
)

// Math is the math family. Build it with NewMath or New("math", ...).
type Math struct {
	ops        []string
	digits     int
	mulA, mulB int
	style      data.Style
	heldOut    float64
	reward     RewardOptions
}

var _ interface {
	Family
	Drawer
	FlawedSolver
} = (*Math)(nil)

// NewMath builds the math family.
func NewMath(opts Options) (*Math, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("math", opts.Params)
	m := &Math{heldOut: h, reward: r}
	m.ops = p.list("ops", []string{"+", "-", "*"}, []string{"+", "-", "*"})
	m.digits = p.int("digits", 3, 1, 18)
	m.mulA = p.int("mul_digits_a", m.digits, 1, 18)
	m.mulB = p.int("mul_digits_b", m.digits, 1, 18)
	switch p.oneOf("style", "plain", []string{"plain", "placed", "atomic"}) {
	case "placed":
		m.style = data.StylePlaced
	case "atomic":
		m.style = data.StyleAtomic
	}
	if err := p.done(); err != nil {
		return nil, err
	}
	if err := probeSplits("math", m, h); err != nil {
		return nil, err
	}
	return m, nil
}

// Name returns "math".
func (m *Math) Name() string { return "math" }

// Draw draws a problem regardless of the split.
func (m *Math) Draw(rng *rand.Rand) Task {
	op := m.ops[rng.IntN(len(m.ops))]
	da, db := m.digits, m.digits
	if op == "*" {
		da, db = m.mulA, m.mulB
	}
	a := randomNumber(rng, da)
	b := randomNumber(rng, db)
	t, err := MathTask(a, op, b)
	if err != nil {
		panic(err) // unreachable: canonical operands and a known operator
	}
	return t
}

// Sample draws a problem of split.
func (m *Math) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(m, rng, split, m.heldOut)
}

// MathTask builds the task "a op b" (a, b decimal numbers without leading zeros, op one of + - *).
func MathTask(a, op, b string) (Task, error) {
	p, err := data.ArithmeticProblem(a, op, b)
	if err != nil {
		return Task{}, fmt.Errorf("math task: %w", err)
	}
	return Task{
		ID: p.Key, Family: "math", Prompt: p.Key + "=?", Answer: p.Answer,
		Meta: map[string]string{"a": a, "op": op, "b": b},
	}, nil
}

// randomNumber returns a decimal number of 1..maxDigits digits (count uniform) without leading zeros.
func randomNumber(rng *rand.Rand, maxDigits int) string {
	n := 1 + rng.IntN(maxDigits)
	if n == 1 {
		return strconv.Itoa(rng.IntN(10))
	}
	b := make([]byte, n)
	b[0] = byte('1' + rng.IntN(9))
	for i := 1; i < n; i++ {
		b[i] = byte('0' + rng.IntN(10))
	}
	return string(b)
}

// Solution returns data's worked solution and the answer.
func (m *Math) Solution(t Task) (reasoning, answer string) {
	p, err := data.ArithmeticProblemStyle(t.Meta["a"], t.Meta["op"], t.Meta["b"], m.style)
	if err != nil {
		return "", t.Answer
	}
	// p.Text is "Q: key=?\nA: <think>REASONING</think> ANSWER\n".
	s := p.Text
	if i := strings.Index(s, "<think>"); i >= 0 {
		s = s[i+len("<think>"):]
	}
	if j := strings.Index(s, "</think>"); j >= 0 {
		s = s[:j]
	}
	return s, p.Answer
}

// Verify grades the integer after "</think>".
func (m *Math) Verify(t Task, completion, finishReason string) Reward {
	return score(m.reward, completion, finishReason, func(ans string) bool { return intEqual(ans, t.Answer) })
}

// maxIntAnswer bounds the answers intEqual parses.
const maxIntAnswer = 256

// intEqual reports whether ans, with white space removed and one leading '+' dropped, is the integer want.
func intEqual(ans, want string) bool {
	if len(ans) > 4*maxIntAnswer {
		return false
	}
	s := strings.Join(strings.Fields(ans), "")
	s = strings.TrimPrefix(s, "+")
	if s == "" || len(s) > maxIntAnswer {
		return false
	}
	body := strings.TrimPrefix(s, "-")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		if body[i] < '0' || body[i] > '9' {
			return false
		}
	}
	var x, y big.Int
	if _, ok := x.SetString(s, 10); !ok {
		return false
	}
	if _, ok := y.SetString(want, 10); !ok {
		return false
	}
	return x.Cmp(&y) == 0
}

// FlawedSolution works the problem with every carry and borrow dropped; ok is false when that gives the
// right answer anyway (no carry or borrow occurs).
func (m *Math) FlawedSolution(t Task) (reasoning, answer string, ok bool) {
	a, op, b := t.Meta["a"], t.Meta["op"], t.Meta["b"]
	var sb strings.Builder
	switch op {
	case "+":
		answer = flawedAdd(&sb, []string{a, b}, m.style.Placed())
	case "-":
		answer = flawedSubtract(&sb, a, b, m.style.Placed())
	case "*":
		answer = flawedMultiply(&sb, a, b, m.style.Placed())
	default:
		return "", "", false
	}
	return sb.String(), answer, answer != t.Answer
}

func digitAt(n string, col int) int {
	if col >= len(n) {
		return 0
	}
	return int(n[len(n)-1-col] - '0')
}

// trimZeros drops leading zeros of a digit string (big-endian).
func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" {
		return "0"
	}
	return t
}

// flawedAdd adds column by column writing each column's sum mod 10 and never carrying.
func flawedAdd(sb *strings.Builder, nums []string, placed bool) string {
	width := 0
	for _, n := range nums {
		width = max(width, len(n))
	}
	if placed {
		data.WritePlaced(sb, nums, width)
	}
	out := make([]byte, width)
	for col := range width {
		data.WriteColumn(sb, col, placed)
		sum := 0
		for j, n := range nums {
			if j > 0 {
				sb.WriteByte('+')
			}
			d := digitAt(n, col)
			sum += d
			sb.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(sb, "=%d, write %d", sum, sum%10)
		out[width-1-col] = byte('0' + sum%10)
	}
	return trimZeros(string(out))
}

// flawedColumns subtracts b from a (a ≥ b) column by column, smaller digit from larger, never borrowing.
func flawedColumns(sb *strings.Builder, a, b string, placed bool) string {
	if placed {
		data.WritePlaced(sb, []string{a, b}, len(a))
	}
	out := make([]byte, len(a))
	for col := range len(a) {
		data.WriteColumn(sb, col, placed)
		t, d := digitAt(a, col), digitAt(b, col)
		v := t - d
		if v < 0 {
			fmt.Fprintf(sb, "%d-%d<0, so %d-%d=%d, write %d", t, d, d, t, -v, -v)
			v = -v
		} else {
			fmt.Fprintf(sb, "%d-%d=%d, write %d", t, d, v, v)
		}
		out[len(a)-1-col] = byte('0' + v)
	}
	n := trimZeros(string(out))
	if len(n) < len(out) {
		sb.WriteString("; drop leading zeros: " + n)
	}
	return n
}

func lessNumber(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func flawedSubtract(sb *strings.Builder, a, b string, placed bool) string {
	if !lessNumber(a, b) {
		return flawedColumns(sb, a, b, placed)
	}
	fmt.Fprintf(sb, "%s<%s, so %s-%s=-(%s-%s); ", a, b, a, b, b, a)
	d := flawedColumns(sb, b, a, placed)
	fmt.Fprintf(sb, "; %s-%s=%s, so %s-%s=-%s", b, a, d, a, b, d)
	if d == "0" {
		return "0"
	}
	return "-" + d
}

// flawedMultiply multiplies digit by digit keeping only the units digit of each product (no carries), then
// adds the shifted partial products without carries.
func flawedMultiply(sb *strings.Builder, a, b string, placed bool) string {
	if placed {
		data.WritePlaced(sb, []string{a}, len(a))
	}
	partials := make([]string, 0, len(b))
	for i := range len(b) {
		if i > 0 {
			sb.WriteString(". ")
		}
		d := digitAt(b, i)
		var p string
		if d == 0 {
			fmt.Fprintf(sb, "%s*0=0", a)
			p = "0"
		} else {
			fmt.Fprintf(sb, "%s*%d: ", a, d)
			out := make([]byte, len(a))
			for col := range len(a) {
				data.WriteColumn(sb, col, placed)
				t := digitAt(a, col)
				fmt.Fprintf(sb, "%d*%d=%d, write %d", t, d, t*d, t*d%10)
				out[len(a)-1-col] = byte('0' + t*d%10)
			}
			p = trimZeros(string(out))
			fmt.Fprintf(sb, ", so %s*%d=%s", a, d, p)
		}
		if p != "0" && i > 0 {
			p += strings.Repeat("0", i)
			fmt.Fprintf(sb, ", shifted %d: %s", i, p)
		}
		partials = append(partials, p)
	}
	if len(partials) == 1 {
		return partials[0]
	}
	sb.WriteString(". Sum: ")
	sum := flawedAdd(sb, partials, placed)
	fmt.Fprintf(sb, ", so %s=%s", strings.Join(partials, "+"), sum)
	return sum
}
