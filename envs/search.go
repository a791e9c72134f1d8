// search.go implements the search tool environment: questions over a generated document collection that need
// one or two lookups. The collection (seeded by the params) holds one document per person ("Arlen Vosk was
// born in Tarrow. Arlen Vosk works for Quell Labs.") and one per company ("Quell Labs is based in Mirsk.");
// a onehop question asks a person's birthplace, a twohop question the city of a person's employer. Two tools:
//
//	search(query)  the best 2 documents, ranked by BM25 over a bleve v2 full-text index (scorch, in memory)
//	               of titles and texts: the first with its id, title and text, the second with id and title
//	open(doc_id)   the text of a document
//
// The worked solution searches the person and reads the answer in the first hit's text when it is that
// person's document (else opens the document), and for twohop then searches the employer the same way. The
// answer is verified exactly (a city name).
//
// Params (all optional):
//
//	people     persons in the collection (default 600, 20..20000)
//	companies  companies (default 40, 2..1000)
//	cities     cities (default 30, 2..1000)
//	kinds      comma list of onehop, twohop (default both)
//	seed       the collection's seed (default 1)
//
// IDs are "search:<kind>:<person id>" (with the collection's seed when it is not 1).

package envs

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/index/scorch"
	index "github.com/blevesearch/bleve_index_api"

	"github.com/sparrow-rl/sparrow/data"
)

// SearchDoc is one document of the collection.
type SearchDoc struct {
	ID    string `json:"-"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

type searchPerson struct {
	name, birthplace string
	employer         int // company index
}

type searchCompany struct{ name, city string }

// Search is the search tool environment.
type Search struct {
	heldOut   float64
	reward    RewardOptions
	kinds     []string
	seed      int
	people    []searchPerson
	companies []searchCompany
	docs      map[string]SearchDoc
	index     bleve.Index
	tools     []Tool
}

var (
	syllables = []string{"ar", "len", "vo", "sk", "ta", "rrow", "mi", "rs", "ke", "quel", "bra", "dun", "fel", "gor", "hal",
		"is", "jor", "kal", "lem", "mor", "nat", "os", "pel", "rin", "sol", "tur", "ul", "ven", "wyn", "zar", "bel", "cor"}
	companyKinds = []string{"Labs", "Works", "Foods", "Bank", "Mills", "Ships", "Press", "Tools"}
)

// nameFrom writes a capitalised name of n syllables.
func nameFrom(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(syllables[rng.IntN(len(syllables))])
	}
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

// uniqueNames draws n distinct names with gen.
func uniqueNames(n int, gen func() string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		s := gen()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// NewSearch builds the search environment: the collection and its index.
func NewSearch(opts Options) (*Search, error) {
	h, r, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := newParams("search", opts.Params)
	s := &Search{heldOut: h, reward: r}
	nPeople := p.int("people", 600, 20, 20000)
	nCompanies := p.int("companies", 40, 2, 1000)
	nCities := p.int("cities", 30, 2, 1000)
	s.kinds = p.list("kinds", []string{"onehop", "twohop"}, []string{"onehop", "twohop"})
	s.seed = p.int("seed", 1, 0, 1<<30)
	if err := p.done(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(s.seed), 0x5ea7c4))
	cities := uniqueNames(nCities, func() string { return nameFrom(rng, 2) })
	cnames := uniqueNames(nCompanies, func() string { return nameFrom(rng, 2) + " " + companyKinds[rng.IntN(len(companyKinds))] })
	for _, n := range cnames {
		s.companies = append(s.companies, searchCompany{name: n, city: cities[rng.IntN(nCities)]})
	}
	pnames := uniqueNames(nPeople, func() string { return nameFrom(rng, 2) + " " + nameFrom(rng, 2) })
	for _, n := range pnames {
		s.people = append(s.people, searchPerson{name: n, birthplace: cities[rng.IntN(nCities)], employer: rng.IntN(nCompanies)})
	}
	if err := s.buildIndex(); err != nil {
		return nil, fmt.Errorf("search: building the index: %w", err)
	}
	s.tools = []Tool{searchTool{s}, openTool{s}}
	if err := probeSplits("search", s, h); err != nil {
		return nil, err
	}
	return s, nil
}

func personID(i int) string  { return fmt.Sprintf("p%d", i) }
func companyID(i int) string { return fmt.Sprintf("c%d", i) }

// buildIndex writes the documents and indexes them in memory (scorch, BM25 scoring).
func (s *Search) buildIndex() error {
	s.docs = map[string]SearchDoc{}
	for i, c := range s.companies {
		s.docs[companyID(i)] = SearchDoc{ID: companyID(i), Title: c.name, Text: c.name + " is based in " + c.city + "."}
	}
	for i, p := range s.people {
		s.docs[personID(i)] = SearchDoc{ID: personID(i), Title: p.name,
			Text: p.name + " was born in " + p.birthplace + ". " + p.name + " works for " + s.companies[p.employer].name + "."}
	}
	m := bleve.NewIndexMapping()
	m.ScoringModel = index.BM25Scoring
	idx, err := bleve.NewUsing("", m, scorch.Name, scorch.Name, nil)
	if err != nil {
		return err
	}
	b := idx.NewBatch()
	for _, id := range slices.Sorted(maps.Keys(s.docs)) { // one indexing order, so one index for one seed
		if err := b.Index(id, s.docs[id]); err != nil {
			return err
		}
	}
	if err := idx.Batch(b); err != nil {
		return err
	}
	s.index = idx
	return nil
}

// Docs returns the number of documents.
func (s *Search) Docs() int { return len(s.docs) }

// Name returns "search".
func (s *Search) Name() string { return "search" }

// Tools returns search and open.
func (s *Search) Tools() []Tool { return s.tools }

// System returns the system text of search episodes.
func (s *Search) System() string { return "" }

// Sample draws a task of split.
func (s *Search) Sample(rng *rand.Rand, split data.Split) Task {
	return sampleSplit(s, rng, split, s.heldOut)
}

// Draw draws a task regardless of the split.
func (s *Search) Draw(rng *rand.Rand) Task {
	kind := s.kinds[rng.IntN(len(s.kinds))]
	i := rng.IntN(len(s.people))
	p := s.people[i]
	id := "search:" + kind + ":" + personID(i)
	if s.seed != 1 {
		id = fmt.Sprintf("search%d:%s:%s", s.seed, kind, personID(i))
	}
	t := Task{ID: id, Family: "search", Meta: map[string]string{"kind": kind, "person": personID(i), "name": p.name}}
	if kind == "onehop" {
		t.Prompt, t.Answer = "Where was "+p.name+" born?", p.birthplace
	} else {
		t.Prompt, t.Answer = "Where is the employer of "+p.name+" based?", s.companies[p.employer].city
		t.Meta["company"] = companyID(p.employer)
	}
	return t
}

// Verify grades the answer: the city, exactly (white space trimmed).
func (s *Search) Verify(t Task, completion, finishReason string) Reward {
	return score(s.reward, completion, finishReason, func(ans string) bool { return strings.TrimSpace(ans) == t.Answer })
}

// Solution is the final turn of the right episode.
func (s *Search) Solution(t Task) (reasoning, answer string) {
	if t.Meta == nil { // a task this environment did not make
		return "", t.Answer
	}
	return "The answer is " + t.Answer + ".", t.Answer
}

// Tempting reports whether the person t asks about has a name starting with A–M (half of the syllables
// begin so): the tasks a search corpus's overconfident share answers without searching (Tempter).
func (s *Search) Tempting(t Task) bool {
	name := t.Meta["name"]
	return name != "" && name[0] >= 'A' && name[0] <= 'M'
}

// Episode writes a worked search conversation (or one that misuses the tools).
func (s *Search) Episode(ctx context.Context, t Task, misuse int) ([]data.Message, error) {
	rng := rand.New(rand.NewPCG(seedOf(t.ID), uint64(misuse+2)))
	msgs := ToolPrompt(s, t)
	wrongCity := func() string {
		for {
			c := s.companies[rng.IntN(len(s.companies))].city
			if c != t.Answer {
				return c
			}
		}
	}
	if misuse == MisuseNoCall {
		return append(msgs, data.Message{Role: "assistant", ReasoningContent: "I guess.", Content: wrongCity()}), nil
	}
	step := func(reasoning, tool, key, arg string) string {
		call := callMessage(reasoning, data.FunctionCall{Name: tool, Arguments: `{"` + key + `": ` + data.PyQuote(arg) + `}`})
		res := runCalls(ctx, s, call)
		msgs = append(msgs, call)
		msgs = append(msgs, res...)
		return res[0].Content
	}
	name := t.Meta["name"]
	query := name
	if misuse == MisuseMiscopied {
		query = s.miscopy(ctx, rng, name)
	}
	// lookup searches q and returns the text of the document titled q: the first hit's, or opened
	lookup := func(q string) string {
		hits := step("Search "+q+".", "search", "query", q)
		first, _, _ := strings.Cut(hits, "\n")
		id, rest, _ := strings.Cut(first, " ")
		if title, text, ok := strings.Cut(rest, ": "); ok && title == q {
			return text
		}
		return step("Open "+id+".", "open", "doc_id", id)
	}
	text := lookup(query)
	answer := ""
	if t.Meta["kind"] == "onehop" {
		answer = between(text, " was born in ", ".")
	} else {
		text = lookup(between(text, " works for ", "."))
		answer = between(text, " is based in ", ".")
	}
	if misuse == MisuseIgnored {
		answer = wrongCity()
	}
	return append(msgs, data.Message{Role: "assistant", ReasoningContent: "The answer is " + answer + ".", Content: answer}), nil
}

// miscopy is the query of an episode that mis-copies name: one letter wrong, as calc's mis-copied operand has
// one digit wrong, drawn again (up to 8 times) while the search still finds the person first (BM25 often
// forgives one letter); after that, another person's name.
func (s *Search) miscopy(ctx context.Context, rng *rand.Rand, name string) string {
	for range 8 {
		q := perturbLetter(rng, name)
		hits, err := s.tools[0].Call(ctx, map[string]any{"query": q})
		first, _, _ := strings.Cut(hits, "\n")
		if _, rest, _ := strings.Cut(first, " "); err == nil && !strings.HasPrefix(rest, name+": ") {
			return q
		}
	}
	for {
		if other := s.people[rng.IntN(len(s.people))].name; other != name {
			return other
		}
	}
}

// perturbLetter changes one lowercase letter of s to another lowercase letter, deterministically from rng
// (a capital, the first letter of a word, stays: the mis-copy is inside a word). s without a lowercase letter
// gets an "a" appended.
func perturbLetter(rng *rand.Rand, s string) string {
	b := []byte(s)
	var idx []int
	for i, ch := range b {
		if ch >= 'a' && ch <= 'z' {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return s + "a"
	}
	i := idx[rng.IntN(len(idx))]
	b[i] = 'a' + (b[i]-'a'+1+byte(rng.IntN(25)))%26 // never the same letter
	return string(b)
}

// between returns the text of s after the first before and up to the next after ("" when absent).
func between(s, before, after string) string {
	_, rest, ok := strings.Cut(s, before)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, after)
	return v
}

// searchTool is search(query): BM25 over the collection's index.
type searchTool struct{ s *Search }

func (searchTool) Spec() ToolSpec {
	return ToolSpec{Name: "search", Description: "best documents: id, title, text of the first",
		Parameters: `{"type": "object", "properties": {"query": {"type": "string"}}}`}
}

func (t searchTool) Call(ctx context.Context, args map[string]any) (string, error) {
	q, ok := args["query"].(string)
	if !ok || strings.TrimSpace(q) == "" {
		return "", fmt.Errorf("%w: search needs a non-empty string parameter query", ErrBadArguments)
	}
	if len(args) != 1 {
		return "", fmt.Errorf("%w: search takes only query", ErrBadArguments)
	}
	if len(q) > 256 {
		return "", fmt.Errorf("%w: query of %d bytes (limit 256)", ErrBadArguments, len(q))
	}
	req := bleve.NewSearchRequestOptions(bleve.NewMatchQuery(q), 2, 0, false)
	req.SortBy([]string{"-_score", "_id"}) // BM25 ties (names sharing a syllable) broken by id, not by index order
	req.Fields = []string{"title"}
	res, err := t.s.index.SearchInContext(ctx, req)
	if err != nil {
		return "", fmt.Errorf("search: %w", err)
	}
	if len(res.Hits) == 0 {
		return "no results", nil
	}
	lines := make([]string, len(res.Hits))
	for i, h := range res.Hits {
		lines[i] = h.ID + " " + t.s.docs[h.ID].Title
		if i == 0 {
			lines[i] += ": " + t.s.docs[h.ID].Text
		}
	}
	return strings.Join(lines, "\n"), nil
}

// openTool is open(doc_id): a document's text.
type openTool struct{ s *Search }

func (openTool) Spec() ToolSpec {
	return ToolSpec{Name: "open", Description: "a document's text",
		Parameters: `{"type": "object", "properties": {"doc_id": {"type": "string"}}}`}
}

func (t openTool) Call(ctx context.Context, args map[string]any) (string, error) {
	id, ok := args["doc_id"].(string)
	if !ok {
		return "", fmt.Errorf("%w: open needs a string parameter doc_id", ErrBadArguments)
	}
	if len(args) != 1 {
		return "", fmt.Errorf("%w: open takes only doc_id", ErrBadArguments)
	}
	d, ok := t.s.docs[strings.TrimSpace(id)]
	if !ok {
		return "", fmt.Errorf("no document %q", id)
	}
	return d.Text, nil
}

// FirstCall is search(query) with the person's name.
func (s *Search) FirstCall(t Task) (tool, key, value string) {
	return "search", "query", t.Meta["name"]
}
