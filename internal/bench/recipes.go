// recipes.go embeds the benchmark recipes (internal/bench/recipes/*.yaml): fixed model and batch shapes that
// a measurement was published on, so `trainer bench train-step --config NAME` reruns it anywhere. A bench
// recipe is an ordinary recipe file (configs.Parse validates it); only the benchmarks read it, so it is not
// among `trainer run`'s recipes.

package bench

import (
	"embed"
	"fmt"
	"os"
	"strings"

	"github.com/sparrow-rl/sparrow/configs"
)

//go:embed recipes/*.yaml
var benchRecipeFS embed.FS

// BenchRecipes lists the names of the embedded benchmark recipes, sorted.
func BenchRecipes() []string { return configs.YAMLNames(benchRecipeFS, "recipes") }

// loadRecipe reads the recipe of a benchmark: an existing file, an embedded benchmark recipe, or an
// embedded training recipe (configs.Load), in that order.
func loadRecipe(name string, sets []string) (*configs.Config, error) {
	if st, err := os.Stat(name); err != nil || st.IsDir() {
		base := strings.TrimSuffix(name, ".yaml")
		if data, rerr := benchRecipeFS.ReadFile("recipes/" + base + ".yaml"); rerr == nil {
			return configs.Parse(data, "internal/bench/recipes/"+base+".yaml", sets)
		}
	}
	c, err := configs.Load(name, sets)
	if err != nil {
		return nil, fmt.Errorf("%w (bench recipes: %s)", err, strings.Join(BenchRecipes(), ", "))
	}
	return c, nil
}
