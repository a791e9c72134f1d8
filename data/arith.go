// arith.go implements ArithmeticGenerator, the synthetic pre-training task of multi-digit addition,
// subtraction and multiplication with a worked, step-by-step solution the way it is done on paper:
//
//	Q: 347+589=?
//	A: <think>7+9=16, write 6 carry 1; 4+8+1=13, write 3 carry 1; 3+5+1=9, write 9</think> 936
//
//   - Addition is column addition from the units column up. Each step lists the column's digits (a missing
//     digit of the shorter operand is written 0) and the incoming carry, their sum, the digit written and the
//     carry out; a carry left after the last column is written as the leading digit ("write 1").
//   - Subtraction a-b with a ≥ b is column subtraction with borrows: "3-8<0, borrow 1: 13-8=5, write 5"; a
//     column that lent writes its digit as "0-1-7<0, borrow 1: 10-1-7=2, write 2". Leading zeros of the
//     difference are dropped in an explicit step. When a < b the solution says so, works b-a and negates.
//   - Multiplication multiplies the first operand by each digit of the second, from the units digit up, as
//     single-digit products with carries ("7*9=63, write 3 carry 6; 4*9+6=42, ..."); the i-th partial product
//     is shifted by i places, and the partial products are summed by column addition.
//
// Placed style (ArithmeticProblemPlaced): the same work, but every operand is first restated with the place of
// each digit written after it (a = units, b = tens, c = hundreds, …, the shorter operands padded with zeros to
// the common width), and every column step starts with its place:
//
//	347: 3c 4b 7a. 589: 5c 8b 9a. a: 7+9=16, write 6 carry 1; b: 4+8+1=13, write 3 carry 1; c: 3+5+1=9, write 9
//
// Atomic style (ArithmeticProblemStyle with StyleAtomic): the placed layout, and every step one fact of two
// operands, so that the facts a model must learn are the single-digit tables: a carry in is added in its own
// step to the units digit of the column's sum or product ("4+8=12, 2+1=3, write 3 carry 1"; "7*8=56, 6+2=8,
// write 8 carry 5"; "2*7=14, 4+6=10, write 0, 1+1=2 carry 2"), and subtraction borrows by equal additions —
// the borrow goes onto the next column's bottom digit ("7+1=8") and a column that borrows is worked by
// complement ("4-8<0, borrow 1: 10-8=2, 2+4=6"):
//
//	342: 3c 4b 2a. 178: 1c 7b 8a. a: 2-8<0, borrow 1: 10-8=2, 2+2=4, write 4; b: 7+1=8, 4-8<0, borrow 1:
//	10-8=2, 2+4=6, write 6; c: 1+1=2, 3-2=1, write 1
//
// (one line in the text). A three-operand fact ("4+8+1=13", "7*8+2=58"), a two-digit one ("56+2=58") or a
// borrow fact ("13-6=7") is learned much later than the single-digit tables by a small model, or not at all
// in the math recipe's budget; decomposed, they reuse the tables the model already knows.
//
// A small causal transformer reads a digit of the prompt only by its distance from the end of its operand,
// which differs from problem to problem; a restated digit sits next to its place letter, so a column step
// finds its digits by content ("the digit before b") instead.
//
// The <think> and </think> here are plain text of the pre-training corpus, not the chat format's specials.
// Operands are decimal strings and all the work is digit by digit, so results are exact at any length.

package data

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// MaxArithmeticDigits bounds ArithmeticGenerator.MaxDigits (texts grow quadratically with it for "*").
const MaxArithmeticDigits = 20

// arithmeticOps is the operator set, in the order used when ArithmeticGenerator.Ops is empty.
var arithmeticOps = []string{"+", "-", "*"}

// ArithmeticGenerator draws problems "a op b" with both operands of 1 to MaxDigits digits (the digit count
// uniform, then the digits uniform, no leading zero) and op uniform over Ops ("+", "-", "*"; empty means all
// three; repeating an operator weights it).
type ArithmeticGenerator struct {
	MaxDigits int
	Ops       []string
}

// Name returns "arithmetic".
func (g ArithmeticGenerator) Name() string { return "arithmetic" }

// Validate checks MaxDigits and Ops.
func (g ArithmeticGenerator) Validate() error {
	if g.MaxDigits < 1 || g.MaxDigits > MaxArithmeticDigits {
		return fmt.Errorf("arithmetic: max_digits %d is outside [1, %d]", g.MaxDigits, MaxArithmeticDigits)
	}
	for i, op := range g.Ops {
		if !slices.Contains(arithmeticOps, op) {
			return fmt.Errorf("arithmetic: ops[%d] is %q (want one of + - *)", i, op)
		}
	}
	return nil
}

// Generate draws one problem. It panics when the generator is invalid (see Validate): OpenCorpus validates.
func (g ArithmeticGenerator) Generate(rng *rand.Rand) Problem {
	if err := g.Validate(); err != nil {
		panic(err)
	}
	ops := g.Ops
	if len(ops) == 0 {
		ops = arithmeticOps
	}
	op := ops[rng.IntN(len(ops))]
	a := randomNumber(rng, g.MaxDigits)
	b := randomNumber(rng, g.MaxDigits)
	p, err := ArithmeticProblem(a, op, b)
	if err != nil {
		panic(err) // unreachable: randomNumber yields canonical numbers and op is valid
	}
	return p
}

// randomNumber returns a decimal number of 1..maxDigits digits without leading zeros.
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

// ArithmeticProblem returns the problem "a op b" with its worked solution. a and b are non-negative decimal
// numbers without leading zeros; op is "+", "-" or "*".
func ArithmeticProblem(a, op, b string) (Problem, error) {
	return arithmeticProblem(a, op, b, StylePlain)
}

// ArithmeticProblemPlaced is ArithmeticProblem with the placed worked solution (see the file comment).
func ArithmeticProblemPlaced(a, op, b string) (Problem, error) {
	return arithmeticProblem(a, op, b, StylePlaced)
}

// ArithmeticProblemStyle is ArithmeticProblem with the worked solution in style st.
func ArithmeticProblemStyle(a, op, b string, st Style) (Problem, error) {
	if st < StylePlain || st > StyleAtomic {
		return Problem{}, fmt.Errorf("arithmetic: unknown solution style %d", st)
	}
	return arithmeticProblem(a, op, b, st)
}

// Style is the layout of a worked solution: plain, placed or atomic (see the file comment).
type Style int

const (
	StylePlain  Style = iota // column steps with several operands ("4+8+1=13")
	StylePlaced              // operands restated with their places, each step labelled with its place
	StyleAtomic              // placed, and every step one fact of two operands ("4+8=12, 2+1=3")
)

// Placed reports whether the style restates the operands with their places.
func (st Style) Placed() bool { return st >= StylePlaced }

func arithmeticProblem(a, op, b string, st Style) (Problem, error) {
	for _, n := range []string{a, b} {
		if !isCanonicalNumber(n) {
			return Problem{}, fmt.Errorf("arithmetic: operand %q is not a decimal number without leading zeros", n)
		}
	}
	var think strings.Builder
	var answer string
	switch op {
	case "+":
		answer = columnAdd(&think, []string{a, b}, st)
	case "-":
		answer = workSubtract(&think, a, b, st)
	case "*":
		answer = workMultiply(&think, a, b, st)
	default:
		return Problem{}, fmt.Errorf("arithmetic: unknown operator %q (want + - *)", op)
	}
	key := a + op + b
	text := "Q: " + key + "=?\nA: <think>" + think.String() + "</think> " + answer + "\n"
	return Problem{Key: key, Text: text, Answer: answer}, nil
}

func isCanonicalNumber(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// digitAt returns the digit of n at place col (0 = units), 0 beyond its length.
func digitAt(n string, col int) int {
	if col >= len(n) {
		return 0
	}
	return int(n[len(n)-1-col] - '0')
}

// lessNumber compares canonical decimal numbers.
func lessNumber(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// fromLittleEndian turns little-endian digits into a canonical number and reports whether zeros were dropped.
func fromLittleEndian(digits []byte) (n string, dropped bool) {
	end := len(digits)
	for end > 1 && digits[end-1] == 0 {
		end--
	}
	b := make([]byte, end)
	for i := range end {
		b[end-1-i] = '0' + digits[i]
	}
	return string(b), end < len(digits)
}

func writeInt(sb *strings.Builder, v int) { sb.WriteString(strconv.Itoa(v)) }

// PlaceLabel is the letter of place col in the placed style: 'a' for units, 'b' for tens, and so on.
func PlaceLabel(col int) byte { return byte('a' + col) }

// WritePlaced restates each number with its digits' places, padded with zeros to width digits:
// "46: 0c 4b 6a. " for width 3.
func WritePlaced(sb *strings.Builder, nums []string, width int) {
	for _, n := range nums {
		sb.WriteString(n)
		sb.WriteByte(':')
		for col := width - 1; col >= 0; col-- {
			sb.WriteByte(' ')
			writeInt(sb, digitAt(n, col))
			sb.WriteByte(PlaceLabel(col))
		}
		sb.WriteString(". ")
	}
}

// WriteColumn starts the step of column col: "; " between steps, then "b: " in the placed style.
func WriteColumn(sb *strings.Builder, col int, placed bool) {
	if col > 0 {
		sb.WriteString("; ")
	}
	if placed {
		sb.WriteByte(PlaceLabel(col))
		sb.WriteString(": ")
	}
}

// columnAdd writes the column addition of nums (two or more) to sb and returns the sum. In the atomic style a
// column of several operands is summed two at a time ("4+8=12, 12+5=17"), and a carry in goes onto the units
// digit of the sum (atomicCarryIn).
func columnAdd(sb *strings.Builder, nums []string, st Style) string {
	width := 0
	for _, n := range nums {
		width = max(width, len(n))
	}
	if st.Placed() {
		WritePlaced(sb, nums, width)
	}
	digits := make([]byte, 0, width+3)
	carry := 0
	for col := range width {
		WriteColumn(sb, col, st.Placed())
		sum := 0
		for j, n := range nums {
			d := digitAt(n, col)
			if j > 0 {
				if st == StyleAtomic && j > 1 {
					sb.WriteString(", ")
					writeInt(sb, sum)
				}
				sb.WriteByte('+')
			}
			writeInt(sb, d)
			sum += d
			if st == StyleAtomic && j > 0 {
				sb.WriteByte('=')
				writeInt(sb, sum)
			}
		}
		if st == StyleAtomic && carry > 0 {
			digits = append(digits, byte((sum+carry)%10))
			carry = atomicCarryIn(sb, sum, carry)
			continue
		}
		if carry > 0 {
			sb.WriteByte('+')
			writeInt(sb, carry)
			sum += carry
		}
		if st != StyleAtomic {
			sb.WriteByte('=')
			writeInt(sb, sum)
		}
		sb.WriteString(", write ")
		writeInt(sb, sum%10)
		digits = append(digits, byte(sum%10))
		carry = sum / 10
		if carry > 0 {
			sb.WriteString(" carry ")
			writeInt(sb, carry)
		}
	}
	if carry > 0 {
		WriteColumn(sb, width, st.Placed())
		sb.WriteString("write ")
		writeInt(sb, carry)
		for ; carry > 0; carry /= 10 {
			digits = append(digits, byte(carry%10))
		}
	}
	n, _ := fromLittleEndian(digits)
	return n
}

// columnSubtract writes the column subtraction a-b (a ≥ b) to sb and returns the difference. The atomic style
// takes a borrow by equal additions: the borrow is added to the next column's bottom digit ("7+1=8"), and a
// column that borrows is worked by complement ("4-8<0, borrow 1: 10-8=2, 2+4=6"), so every step is one
// fact of two operands.
func columnSubtract(sb *strings.Builder, a, b string, st Style) string {
	if st.Placed() {
		WritePlaced(sb, []string{a, b}, len(a))
	}
	digits := make([]byte, 0, len(a))
	borrow := 0
	for col := range len(a) {
		WriteColumn(sb, col, st.Placed())
		t, d := digitAt(a, col), digitAt(b, col)
		var v int
		if st == StyleAtomic {
			v, borrow = atomicSubtractColumn(sb, t, d, borrow)
		} else {
			v, borrow = subtractColumn(sb, t, d, borrow)
		}
		sb.WriteString(", write ")
		writeInt(sb, v)
		digits = append(digits, byte(v))
	}
	n, dropped := fromLittleEndian(digits)
	if dropped {
		sb.WriteString("; drop leading zeros: ")
		sb.WriteString(n)
	}
	return n
}

// subtractColumn writes "t-d=v" or "t-d<0, borrow 1: 1t-d=v", with "-1" after the top digit when the column
// lent to the previous one, and returns v and the borrow out.
func subtractColumn(sb *strings.Builder, t, d, borrow int) (v, out int) {
	expr := func(top int) {
		writeInt(sb, top)
		if borrow > 0 {
			sb.WriteString("-1")
		}
		sb.WriteByte('-')
		writeInt(sb, d)
	}
	expr(t)
	v = t - borrow - d
	if v < 0 {
		sb.WriteString("<0, borrow 1: ")
		expr(10 + t)
		v += 10
		out = 1
	}
	sb.WriteByte('=')
	writeInt(sb, v)
	return v, out
}

// atomicSubtractColumn writes the column by equal additions: "d+1=e" when the previous column borrowed, then
// "t-e=v" or "t-e<0, borrow 1: 10-e=c, c+t=v"; it returns v and the borrow out.
func atomicSubtractColumn(sb *strings.Builder, t, d, borrow int) (v, out int) {
	e := d + borrow
	if borrow > 0 {
		fmt.Fprintf(sb, "%d+%d=%d, ", d, borrow, e)
	}
	if t >= e {
		fmt.Fprintf(sb, "%d-%d=%d", t, e, t-e)
		return t - e, 0
	}
	c := 10 - e
	fmt.Fprintf(sb, "%d-%d<0, borrow 1: 10-%d=%d, %d+%d=%d", t, e, e, c, c, t, c+t)
	return c + t, 1
}

// workSubtract writes the solution of a-b and returns it, negative when a < b.
func workSubtract(sb *strings.Builder, a, b string, st Style) string {
	if !lessNumber(a, b) {
		return columnSubtract(sb, a, b, st)
	}
	fmt.Fprintf(sb, "%s<%s, so %s-%s=-(%s-%s); ", a, b, a, b, b, a)
	d := columnSubtract(sb, b, a, st)
	fmt.Fprintf(sb, "; %s-%s=%s, so %s-%s=-%s", b, a, d, a, b, d)
	return "-" + d
}

// workMultiply writes the solution of a*b and returns the product.
func workMultiply(sb *strings.Builder, a, b string, st Style) string {
	if st.Placed() {
		WritePlaced(sb, []string{a}, len(a))
	}
	partials := make([]string, 0, len(b))
	for i := range len(b) {
		if i > 0 {
			sb.WriteString(". ")
		}
		d := digitAt(b, i)
		p := multiplyDigit(sb, a, d, st)
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
	sum := columnAdd(sb, partials, st)
	fmt.Fprintf(sb, ", so %s=%s", strings.Join(partials, "+"), sum)
	return sum
}

// atomicCarryIn finishes a column whose sum or product v (its step already written) takes a carry in, with
// two-operand facts: the carry added to v's units digit, the digit written, and v's tens (plus one when the
// units overflowed) carried: ", 6+2=8, write 8 carry 5" after "7*8=56"; ", 4+6=10, write 0, 1+1=2 carry 2"
// after "2*7=14". It returns the carry out.
func atomicCarryIn(sb *strings.Builder, v, carry int) int {
	tens, units := v/10, v%10
	u := units + carry
	fmt.Fprintf(sb, ", %d+%d=%d, write %d", units, carry, u, u%10)
	out := tens
	if u >= 10 {
		out++
		if tens > 0 {
			fmt.Fprintf(sb, ", %d+1=%d", tens, out)
		}
	}
	if out > 0 {
		fmt.Fprintf(sb, " carry %d", out)
	}
	return out
}

// multiplyDigit writes "a*d: steps, so a*d=P" (or "a*0=0") and returns P.
func multiplyDigit(sb *strings.Builder, a string, d int, st Style) string {
	if d == 0 {
		fmt.Fprintf(sb, "%s*0=0", a)
		return "0"
	}
	fmt.Fprintf(sb, "%s*%d: ", a, d)
	digits := make([]byte, 0, len(a)+1)
	carry := 0
	for col := range len(a) {
		WriteColumn(sb, col, st.Placed())
		t := digitAt(a, col)
		p := t*d + carry
		if st == StyleAtomic && carry > 0 {
			fmt.Fprintf(sb, "%d*%d=%d", t, d, t*d)
			carry = atomicCarryIn(sb, t*d, carry)
			digits = append(digits, byte(p%10))
			continue
		}
		writeInt(sb, t)
		sb.WriteByte('*')
		writeInt(sb, d)
		if carry > 0 {
			sb.WriteByte('+')
			writeInt(sb, carry)
		}
		sb.WriteByte('=')
		writeInt(sb, p)
		sb.WriteString(", write ")
		writeInt(sb, p%10)
		digits = append(digits, byte(p%10))
		carry = p / 10
		if carry > 0 {
			sb.WriteString(" carry ")
			writeInt(sb, carry)
		}
	}
	if carry > 0 {
		WriteColumn(sb, len(a), st.Placed())
		sb.WriteString("write ")
		writeInt(sb, carry)
		digits = append(digits, byte(carry))
	}
	p, _ := fromLittleEndian(digits)
	fmt.Fprintf(sb, ", so %s*%d=%s", a, d, p)
	return p
}
