// Tests of the copy family: the tasks a seed draws (golden), the bounds of their strings, the verifier and
// the params' errors.

package envs

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCopyDrawGolden pins the tasks of one seed: a change to the generator changes every corpus built on it.
func TestCopyDrawGolden(t *testing.T) {
	c, err := NewCopy(Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var got []string
	for range 4 {
		got = append(got, c.Draw(rng).Prompt)
	}
	want := []string{
		"Repeat: Ugbmlderly 775030 Aistv",
		"Repeat: Rnapyscj Arnat Yoxvvxq",
		"Repeat: 98945477",
		"Repeat: 57878370531",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("prompts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCopyBounds: every string has min_len..max_len characters, all digits (no leading 0) or a capitalised
// lowercase word; 1..items strings; the solution repeats them in the reasoning and the answer.
func TestCopyBounds(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		params                map[string]string
		items, minLen, maxLen int
	}{
		{"defaults", map[string]string{"kinds": "digits,word"}, 3, 3, 12},
		{"one long", map[string]string{"items": "1", "min_len": "20", "max_len": "32", "kinds": "digits,word"}, 1, 20, 32},
		{"fixed length", map[string]string{"items": "8", "min_len": "5", "max_len": "5", "kinds": "word,digits"}, 8, 5, 5},
		{"names", map[string]string{"items": "2", "kinds": "name"}, 2, 2, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCopy(Options{Params: tc.params})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, 7))
			seenItems := map[int]bool{}
			for range 2000 {
				task := c.Draw(rng)
				strs := strings.Split(task.Answer, " ")
				seenItems[len(strs)] = true
				if len(strs) > tc.items || task.Prompt != "Repeat: "+task.Answer || task.ID != "copy:"+task.Answer {
					t.Fatalf("task %+v", task)
				}
				for _, s := range strs {
					if len(s) < tc.minLen || len(s) > tc.maxLen || !copyWord(s) || (tc.params["kinds"] == "name" && !syllableName(s)) {
						t.Fatalf("string %q of task %q", s, task.Answer)
					}
				}
				if r, a := c.Solution(task); r != task.Answer || a != task.Answer {
					t.Fatalf("solution %q, %q of %q", r, a, task.Answer)
				}
			}
			if len(seenItems) != tc.items {
				t.Errorf("string counts drawn %v, want 1..%d", seenItems, tc.items)
			}
		})
	}
}

// copyWord reports whether s is all digits without a leading 0, or a capital followed by lowercase letters.
func copyWord(s string) bool {
	digits, word := s[0] >= '1' && s[0] <= '9', s[0] >= 'A' && s[0] <= 'Z'
	for i := 1; i < len(s); i++ {
		digits = digits && s[i] >= '0' && s[i] <= '9'
		word = word && s[i] >= 'a' && s[i] <= 'z'
	}
	return digits || word
}

// syllableName reports whether s is a capitalised concatenation of 1..3 of the search names' syllables.
func syllableName(s string) bool {
	var rest func(s string, n int) bool
	rest = func(s string, n int) bool {
		if s == "" {
			return n >= 1
		}
		for _, syl := range syllables {
			if n < 3 && strings.HasPrefix(s, syl) && rest(s[len(syl):], n+1) {
				return true
			}
		}
		return false
	}
	return s != "" && rest(strings.ToLower(s[:1])+s[1:], 0)
}

func TestVerifyCopy(t *testing.T) {
	c, err := NewCopy(Options{})
	if err != nil {
		t.Fatal(err)
	}
	task := Task{ID: "copy:Abc 123", Family: "copy", Prompt: "Repeat: Abc 123", Answer: "Abc 123", Meta: map[string]string{"strings": "2"}}
	checkVerify(t, c, task, append(commonCases("Abc 123"),
		verifyCase{"spaces around", "w</think> Abc 123\n", "stop", true, rightParts},
		verifyCase{"one missing", "w</think>Abc", "stop", false, wrongParts},
		verifyCase{"order", "w</think>123 Abc", "stop", false, wrongParts},
		verifyCase{"double space", "w</think>Abc  123", "stop", false, wrongParts},
	))
}

func TestCopyParamErrors(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   string
	}{
		{map[string]string{"items": "9"}, "params.items: 9 is outside [1, 8]"},
		{map[string]string{"min_len": "6", "max_len": "4"}, "params.max_len: 4 is below min_len 6"},
		{map[string]string{"max_len": "x"}, `params.max_len: want an integer, got "x"`},
		{map[string]string{"length": "4"}, "length"},
	} {
		_, err := NewCopy(Options{Params: tc.params})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.params, err, tc.want)
		}
	}
}
