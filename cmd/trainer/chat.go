// chat.go implements `trainer chat`, the debugging commands of the DeepSeek-V3.2 chat format:
// `chat encode` prints the exact prompt (or its token ids and loss mask) that data.Encode renders for a
// JSON array of messages in the HF/OpenAI shape, and `chat parse` prints the assistant message that
// data.ParseCompletion recovers from a completion, or its typed error with a non-zero exit.

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sparrow-rl/sparrow/data"
)

func init() { extraCommands = append(extraCommands, newChatCmd) }

// readInput reads a file, or standard input for "-".
func readInput(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(path)
}

func newChatCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "chat",
		Short: "Render and parse the DeepSeek-V3.2 chat format",
		Long: "Render conversations to the exact DeepSeek-V3.2 prompt (encoding_dsv32.py), and parse model\n" +
			"completions back into reasoning, content and DSML tool calls.",
	}
	c.AddCommand(newChatEncodeCmd(), newChatParseCmd())
	return c
}

// chatInput is the file `chat encode` reads: a JSON array of messages, or an object with them.
type chatInput struct {
	Mode     string         `json:"mode"`
	Context  []data.Message `json:"context"`
	Messages []data.Message `json:"messages"`
}

func newChatEncodeCmd() *cobra.Command {
	var (
		mode, toolsTmpl, rfTmpl                   string
		keep, allowDev, ids, mask, noBOS, newline bool
	)
	c := &cobra.Command{
		Use:   "encode FILE.json",
		Short: "Print the prompt rendered for a JSON array of messages",
		Long: "Print the DeepSeek-V3.2 prompt for FILE (\"-\" for stdin): a JSON array of messages in the\n" +
			"HF/OpenAI shape (tools and response_format on the system or developer message, tool_calls with\n" +
			"function.arguments as JSON text), or an object {\"mode\", \"context\", \"messages\"} where context is\n" +
			"a conversation already rendered (no BOS, only messages printed). The prompt is printed byte for\n" +
			"byte, with no newline added (see --newline).\n\n" +
			"The tools and response-format preambles are Sparrow's own wording; --template and --rf-template\n" +
			"replace them with a file (e.g. the official text, for byte-exact DeepSeek prompts). A template\n" +
			"without {tool_schemas} / {schema} is a preamble (its final newline dropped) to which the\n" +
			"structural part is appended; {dsml_token}, {thinking_start_token} and {thinking_end_token} are\n" +
			"replaced by the literals.",
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput(cmd, args[0])
			if err != nil {
				return fmt.Errorf("chat encode: %w", err)
			}
			var in chatInput
			if t := strings.TrimSpace(string(raw)); strings.HasPrefix(t, "[") {
				err = json.Unmarshal(raw, &in.Messages)
			} else {
				err = json.Unmarshal(raw, &in)
			}
			if err != nil {
				return fmt.Errorf("chat encode: %s: %w", args[0], err)
			}
			if in.Mode == "" || cmd.Flags().Changed("mode") {
				in.Mode = mode
			}
			opt := data.EncodeOptions{Mode: in.Mode, Context: in.Context, DropThinking: !keep, AddBOS: !noBOS, AllowDeveloper: allowDev}
			if toolsTmpl != "" {
				if opt.ToolsTemplate, err = data.ReadTemplateFile(toolsTmpl, data.PlaceholderToolSchemas); err != nil {
					return fmt.Errorf("chat encode: --template: %w", err)
				}
				d := data.TemplateDigest(opt.ToolsTemplate, data.PlaceholderToolSchemas)
				slog.Info("tools template", "file", toolsTmpl, "sha256", d, "official_deepseek_text", d == data.OfficialToolsTextSHA256)
			}
			if rfTmpl != "" {
				if opt.ResponseFormatTemplate, err = data.ReadTemplateFile(rfTmpl, data.PlaceholderSchema); err != nil {
					return fmt.Errorf("chat encode: --rf-template: %w", err)
				}
				d := data.TemplateDigest(opt.ResponseFormatTemplate, data.PlaceholderSchema)
				slog.Info("response-format template", "file", rfTmpl, "sha256", d, "official_deepseek_text", strings.HasPrefix(d, data.OfficialResponseFormatSHA256Pre))
			}
			out := cmd.OutOrStdout()
			if ids || mask {
				tok := &data.Tokenizer{VocabSize: data.NumTokenIDs}
				toks, lossMask, err := data.EncodeForTraining(tok, in.Messages, opt)
				if err != nil {
					return fmt.Errorf("chat encode: %s: %w", args[0], err)
				}
				var b []byte
				if mask {
					b, err = json.Marshal(struct {
						IDs      []int32 `json:"ids"`
						LossMask []int   `json:"loss_mask"`
					}{toks, widen(lossMask)})
				} else {
					b, err = json.Marshal(toks)
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			prompt, err := data.Encode(in.Messages, opt)
			if err != nil {
				return fmt.Errorf("chat encode: %s: %w", args[0], err)
			}
			if newline {
				prompt += "\n"
			}
			_, err = io.WriteString(out, prompt)
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&mode, "mode", data.ModeThinking, "thinking or chat (overrides the file's \"mode\")")
	f.BoolVar(&keep, "keep-reasoning", false, "keep the reasoning of turns before the last user message (thinking mode)")
	f.StringVar(&toolsTmpl, "template", "", "file with the tools-block template (default: Sparrow's wording)")
	f.StringVar(&rfTmpl, "rf-template", "", "file with the response-format template (default: Sparrow's wording)")
	f.BoolVar(&allowDev, "allow-developer", false, "admit the developer role (reserved for search-agent flows)")
	f.BoolVar(&ids, "ids", false, "print the token ids (byte tokenizer with special ids) as a JSON array")
	f.BoolVar(&mask, "mask", false, "print {\"ids\": [...], \"loss_mask\": [...]} (1 on assistant-generated tokens)")
	f.BoolVar(&noBOS, "no-bos", false, "do not start with BOS")
	f.BoolVar(&newline, "newline", false, "end the printed prompt with a newline")
	return c
}

func widen(m []uint8) []int {
	out := make([]int, len(m))
	for i, v := range m {
		out[i] = int(v)
	}
	return out
}

func newChatParseCmd() *cobra.Command {
	var (
		mode      string
		keepFinal bool
	)
	c := &cobra.Command{
		Use:   "parse FILE.txt",
		Short: "Parse a completion into an assistant message (JSON) or report why it is malformed",
		Long: "Parse FILE (\"-\" for stdin): the text a model wrote after the prompt's final <think> or </think>.\n" +
			"Prints {\"role\": \"assistant\", \"content\", \"reasoning_content\", \"tool_calls\"} as JSON, or the parse\n" +
			"error (exit status 1). One final newline, which editors add, is dropped unless --keep-final-newline.\n" +
			"A FILE ending in .json holds {\"mode\": ..., \"text\": ...} (or a JSON string) instead.",
		Args:         cobra.ExactArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput(cmd, args[0])
			if err != nil {
				return fmt.Errorf("chat parse: %w", err)
			}
			text := string(raw)
			if strings.HasSuffix(args[0], ".json") {
				var in struct {
					Mode string `json:"mode"`
					Text string `json:"text"`
				}
				if err := json.Unmarshal(raw, &in.Text); err != nil {
					if err := json.Unmarshal(raw, &in); err != nil {
						return fmt.Errorf("chat parse: %s: want a JSON string or {\"mode\", \"text\"}: %w", args[0], err)
					}
				}
				text = in.Text
				if in.Mode != "" && !cmd.Flags().Changed("mode") {
					mode = in.Mode
				}
			} else if !keepFinal {
				text = strings.TrimSuffix(text, "\n")
			}
			msg, err := data.ParseCompletion(text, mode)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err) // err already says "chat parse: ..."
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), msg.JSON())
			return err
		},
	}
	c.Flags().StringVar(&mode, "mode", data.ModeThinking, "thinking (reasoning up to </think> first) or chat")
	c.Flags().BoolVar(&keepFinal, "keep-final-newline", false, "parse the file's final newline as part of the completion")
	return c
}
