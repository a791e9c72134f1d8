// Tests of the extension points a later section (e.g. `rl:`) relies on: inheritance of any struct-typed
// section shared by Config and Stage, and decoding of maps and lists of structs.
package configs

import (
	"reflect"
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

type testEnv struct {
	Name   string  `yaml:"name"`
	Weight float64 `yaml:"weight"`
}

type testRL struct {
	GroupSize int                `yaml:"group_size"`
	Rewards   map[string]float64 `yaml:"rewards"`
	Envs      []testEnv          `yaml:"envs"`
}

type testConfig struct {
	Name  string `yaml:"name"`
	Train Train  `yaml:"train"`
	RL    testRL `yaml:"rl"`
}

type testStage struct {
	Name string `yaml:"name"`
	RL   testRL `yaml:"rl"`
}

func TestInheritNewSection(t *testing.T) {
	cfg := testConfig{Name: "top", RL: testRL{GroupSize: 8, Rewards: map[string]float64{"exact": 1}, Envs: []testEnv{{"math", 1}}}}
	var st testStage
	inheritSections(reflect.ValueOf(&st).Elem(), reflect.ValueOf(cfg))
	if st.Name != "" {
		t.Errorf("the stage inherited the config's name %q; only sections are inherited", st.Name)
	}
	if !reflect.DeepEqual(st.RL, cfg.RL) {
		t.Errorf("stage rl = %+v, want %+v", st.RL, cfg.RL)
	}
	st.RL.Rewards["exact"] = 2
	st.RL.Envs[0].Name = "code"
	if cfg.RL.Rewards["exact"] != 1 || cfg.RL.Envs[0].Name != "math" {
		t.Errorf("the stage shares a map or slice with the config: %+v", cfg.RL)
	}
}

func TestDecodeMapsAndStructLists(t *testing.T) {
	start := testRL{GroupSize: 8, Rewards: map[string]float64{"exact": 1, "format": 0.1}}
	cases := []struct {
		yml  string
		want testRL
		err  string
	}{
		{"group_size: 4\n", testRL{GroupSize: 4, Rewards: map[string]float64{"exact": 1, "format": 0.1}}, ""},
		{"rewards: {format: 0.5, length: 0}\n", testRL{GroupSize: 8, Rewards: map[string]float64{"exact": 1, "format": 0.5, "length": 0}}, ""},
		{"envs:\n  - {name: math, weight: 2}\n  - name: code\n", testRL{GroupSize: 8, Rewards: start.Rewards, Envs: []testEnv{{"math", 2}, {"code", 0}}}, ""},
		{"rewards: {exact: high}\n", testRL{}, `x.yaml:1: rl.rewards.exact: want a number, got "high"`},
		{"envs:\n  - {name: math, wieght: 2}\n", testRL{}, "x.yaml:2: rl.envs[0].wieght: unknown key (did you mean weight?)"},
		{"rewards: [1]\n", testRL{}, "x.yaml:1: rl.rewards: want a mapping, got a list"},
	}
	for _, tc := range cases {
		f, err := parser.ParseBytes([]byte(tc.yml), 0)
		if err != nil {
			t.Fatal(err)
		}
		got := deepCopy(reflect.ValueOf(start)).Interface().(testRL)
		d := &decoder{source: "x.yaml", lines: true, anchors: map[string]ast.Node{}, origins: map[string]origin{}}
		d.value(f.Docs[0].Body, reflect.ValueOf(&got).Elem(), "rl")
		if tc.err != "" {
			if len(d.errs) == 0 || !strings.Contains(d.errs[0].Error(), tc.err) {
				t.Errorf("%q: errors %v, want %q", tc.yml, d.errs, tc.err)
			}
			continue
		}
		if len(d.errs) > 0 {
			t.Errorf("%q: %v", tc.yml, d.errs)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.yml, got, tc.want)
		}
		if start.Rewards["format"] != 0.1 {
			t.Fatalf("decoding changed the map it started from")
		}
	}
}

func TestStageLookup(t *testing.T) {
	c := mustParse(t, "stages:\n  - {name: pretrain, kind: pretrain}\n  - {name: rl_math, kind: rl}\n")
	s, ok := c.Stage("rl_math")
	if !ok || s != &c.Stages[1] {
		t.Errorf("Stage(rl_math) = %v, %v; want the second stage", s, ok)
	}
	if _, ok := c.Stage("sft"); ok {
		t.Error("Stage(sft) found a stage that does not exist")
	}
}
