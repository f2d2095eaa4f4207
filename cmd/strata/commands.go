package main

import (
	"time"

	"github.com/spf13/cobra"
)

// subcommands lists every command under the root. One file per command.
func subcommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newLoadCmd(g),
		newImportCmd(g),
		newSaveCmd(g),
		newPullCmd(g),
		newPushCmd(g),
		newLoginCmd(g),
		newLogoutCmd(g),
		newImageCmd(g),
		newImagesCmd(g),
		newRmiCmd(g),
		newTagCmd(g),
		newHistoryCmd(g),
		newInspectCmd(g, true),
		newMountCmd(g),
		newUmountCmd(g),
		newMountsCmd(g),
		newDiffCmd(g),
		newCommitCmd(g),
		newBuildCmd(g),
		newBuilderCmd(g),
		newRunCmd(g),
		newCreateCmd(g),
		newStartCmd(g),
		newStopCmd(g),
		newRestartCmd(g),
		newKillCmd(g),
		newContainerRmCmd(g),
		newWaitCmd(g),
		newPsCmd(g),
		newLogsCmd(g),
		newExecCmd(g),
		newCpCmd(g),
		newContainerCmd(g),
		newSuperviseCmd(g),
		newSystemCmd(g),
		newCheckCmd(g),
		newGCCmd(g),
		newBenchCmd(g),
		newSnapshotterCmd(g),
		newVersionCmd(g),
		newCompletionCmd(g),
	}
}

func secs(n int) time.Duration { return time.Duration(n) * time.Second }
