package main

import (
	"io"

	"github.com/spf13/cobra"
)

// bashShim stands in for the two helpers of the bash-completion package
// that cobra's bash script calls, where that package is not installed
// (a minimal Debian, a container): the script then works in a plain bash.
// Where the package is loaded, its own helpers are used.
const bashShim = `# strata: minimal stand-ins for bash-completion's helpers, defined only when
# that package is not loaded, so that completion works without it.
if ! declare -F _get_comp_words_by_ref >/dev/null 2>&1; then
_get_comp_words_by_ref() {
    local exclude=""
    if [[ $1 == -n ]]; then exclude=$2; shift 2; fi
    local i w j=-1 at=0 joined=()
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        # Rejoin what COMP_WORDBREAKS split at the excluded characters
        # ("demo" ":" "latest" is one word, demo:latest).
        if ((j >= 0)) && [[ -n $exclude ]] && [[ $w == ["$exclude"] || ${joined[j]} == *["$exclude"] ]]; then
            joined[j]+=$w
        else
            joined[++j]=$w
        fi
        if ((i == COMP_CWORD)); then at=$j; fi
    done
    words=("${joined[@]}")
    cword=$at
    cur=${joined[at]}
    prev=""
    if ((at > 0)); then prev=${joined[at-1]}; fi
}
fi
if ! declare -F _filedir >/dev/null 2>&1; then
_filedir() {
    local IFS=$'\n'
    if [[ $1 == -d ]]; then
        COMPREPLY+=($(compgen -d -- "$cur"))
    else
        COMPREPLY+=($(compgen -f -- "$cur"))
    fi
}
fi
`

func newCompletionCmd(_ *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the completion script of a shell. Image names, IDs and commands complete.

The bash script works in a plain bash: the bash-completion package is not
needed (where it is loaded, its helpers are used).`,
		Example: `  source <(strata completion bash)                      # this shell
  strata completion bash > /etc/bash_completion.d/strata  # every new shell
  strata completion zsh > "${fpath[1]}/_strata"
  strata completion fish > ~/.config/fish/completions/strata.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeCompletion(cmd.Root(), cmd.OutOrStdout(), args[0])
		},
	}
	return cmd
}

func writeCompletion(root *cobra.Command, w io.Writer, shell string) error {
	switch shell {
	case "bash":
		if _, err := io.WriteString(w, bashShim); err != nil {
			return err
		}
		return root.GenBashCompletionV2(w, true)
	case "zsh":
		return root.GenZshCompletion(w)
	case "fish":
		return root.GenFishCompletion(w, true)
	case "powershell":
		return root.GenPowerShellCompletionWithDesc(w)
	}
	return &unknownShellError{shell}
}

type unknownShellError struct{ shell string }

func (e *unknownShellError) Error() string {
	return "unknown shell " + e.shell + ": want bash, zsh, fish or powershell"
}
