#!/usr/bin/env bash
# Builds the tools the tests and the lab need from Go modules pinned under
# hack/tools/<module>/go.mod, into bin/<tool>-<version>/, and prints nothing
# for a tool already built (a warm run rebuilds nothing).
#
# Usage: hack/tools.sh [tool ...]     (no argument: every tool)
#        hack/tools.sh --path tool    (print the binary's path, building it if missing)
#
# Tools: controller-gen kube-apiserver kube-controller-manager kube-scheduler
#        kubectl etcd kwok kwokctl spire-server spire-agent spire-controller-manager
#        pilot-discovery (istiod, for the mesh integration tests)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${SPIREFED_BIN:-$root/bin}
tools=$root/hack/tools

# version_of MODULE_DIR MODULE: the version that MODULE_DIR/go.mod requires.
version_of() {
	awk -v m="$2" '($1 == m || $1 == "require" && $2 == m) { v = ($1 == m) ? $2 : $3 } END { print v }' "$tools/$1/go.mod"
}

kube_version=$(version_of kube k8s.io/kubernetes)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
etcd_version=$(version_of etcd go.etcd.io/etcd/server/v3)
kwok_version=$(version_of kwok sigs.k8s.io/kwok)
spire_version=$(version_of spire github.com/spiffe/spire)
scm_version=$(version_of scm github.com/spiffe/spire-controller-manager)
cg_version=$(version_of controller-gen sigs.k8s.io/controller-tools)
istio_version=$(version_of istio istio.io/istio)
# istio.io/istio is served only as a pseudo-version of its master branch; the
# VERSION file of that commit says 1.31, and istiod reports "<VERSION>-dev"
# as Istio's own Makefile builds it.
istio_release=1.31-dev
istio_commit=${istio_version##*-}

# spec TOOL: "module-dir version package ldflags"
spec() {
	case "$1" in
	kube-apiserver | kube-controller-manager | kube-scheduler | kubectl)
		echo "kube $kube_version k8s.io/kubernetes/cmd/$1 -X=k8s.io/component-base/version.gitVersion=$kube_version -X=k8s.io/component-base/version.gitMajor=1 -X=k8s.io/component-base/version.gitMinor=$kube_minor -X=k8s.io/component-base/version.gitTreeState=clean" ;;
	etcd) echo "etcd $etcd_version ." ;;
	kwok | kwokctl) echo "kwok $kwok_version sigs.k8s.io/kwok/cmd/$1" ;;
	spire-server | spire-agent)
		echo "spire $spire_version github.com/spiffe/spire/cmd/$1 -X=github.com/spiffe/spire/pkg/common/version.gittag=${spire_version#v}" ;;
	spire-controller-manager) echo "scm $scm_version github.com/spiffe/spire-controller-manager/cmd" ;;
	controller-gen) echo "controller-gen $cg_version sigs.k8s.io/controller-tools/cmd/controller-gen" ;;
	pilot-discovery)
		echo "istio $istio_version istio.io/istio/pilot/cmd/pilot-discovery -X=istio.io/istio/pkg/version.buildVersion=$istio_release -X=istio.io/istio/pkg/version.buildGitRevision=$istio_commit -X=istio.io/istio/pkg/version.buildStatus=Clean -X=istio.io/istio/pkg/version.buildTag=$istio_release" ;;
	*) echo "unknown tool $1" >&2; return 1 ;;
	esac
}

all_tools="controller-gen etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl spire-server spire-agent spire-controller-manager pilot-discovery"

# path_of TOOL: bin/<tool>-<version>[-<hash of ldflags>]/<tool>, so that a
# change of build flags rebuilds the tool.
path_of() {
	local s version ldflags key
	s=$(spec "$1")
	read -r _ version _ ldflags <<<"$s"
	key=$version
	if [ -n "$ldflags" ]; then
		key=$version-$(printf '%s' "$ldflags" | sha256sum | cut -c1-8)
	fi
	echo "$bin/$1-$key/$1"
}

build() {
	local tool=$1 n=$2 total=$3 s dir version pkg ldflags out
	s=$(spec "$tool")
	read -r dir version pkg ldflags <<<"$s"
	out=$(path_of "$tool")
	[ -x "$out" ] && return 0
	local start=$SECONDS
	echo "tools: [$n/$total] building $tool $version (from hack/tools/$dir) ..." >&2
	mkdir -p "$(dirname "$out")"
	(cd "$tools/$dir" && CGO_ENABLED=${CGO_ENABLED:-1} go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
	mv "$out.tmp" "$out"
	echo "tools: [$n/$total] built $tool in $((SECONDS - start))s -> ${out#"$root"/}" >&2
}

if [ "${1:-}" = "--path" ]; then
	shift
	build "$1" 1 1
	path_of "$1"
	exit 0
fi

list=${*:-$all_tools}
total=$(wc -w <<<"$list")
n=0
for t in $list; do
	n=$((n + 1))
	build "$t" "$n" "$total"
done
