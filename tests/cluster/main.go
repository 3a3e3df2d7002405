package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	_ = embed.NewConfig
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "kube-apiserver":
		os.Args = os.Args[1:]
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Args = os.Args[1:]
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kubectl":
		os.Args = os.Args[1:]
		os.Exit(cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()))
	}
}
