// Command kubectl is upstream's kubectl (k8s.io/kubernetes/cmd/kubectl) built
// from the published k8s.io/kubectl module, for Kiln's local stack
// (hack/setup.d/35-kubectl.sh builds it; hack/demo.sh and the e2e tests run
// it). The body mirrors upstream's entry point, so behaviour, flags and exit
// codes are those of the release binary.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Registers the client-go auth plugins (exec, OIDC) a kubeconfig may name,
	// as the release binary does.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	// RunNoErrOutput leaves printing the error to CheckErr, which formats API
	// errors the kubectl way and picks the exit code.
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
