// Command olm-validate checks an OLM bundle directory (manifests/ and metadata/) with the Operator
// Framework's own validation library, github.com/operator-framework/api: the validators that
// `operator-sdk bundle validate` runs by default (ClusterServiceVersion, CustomResourceDefinition,
// bundle), and the optional ones of its `--select-optional suite=operatorframework` (OperatorHub,
// standard capabilities and categories, good practices, deprecated APIs for the CSV's
// minKubeVersion), plus bundle-object validation. The multi-architecture validator is left out: it
// inspects the images in a registry, which tests cannot reach.
//
// operator-sdk also checks the bundle's directory format (operator-registry's
// ValidateBundleFormat); that module drags in container-runtime libraries, so the few rules it
// applies to metadata/annotations.yaml are checked here instead, with the same keys and values.
//
//	olm-validate [-strict] BUNDLE_DIR
//
// Prints one line per finding ("ERROR ..." or "WARN ...") and a summary; exits 1 when a finding
// is an error, or any finding at all with -strict.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
	"sigs.k8s.io/yaml"
)

// The annotations operator-registry requires of a registry+v1 bundle image's metadata.
var requiredAnnotations = map[string]string{
	"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
	"operators.operatorframework.io.bundle.manifests.v1": "manifests/",
	"operators.operatorframework.io.bundle.metadata.v1":  "metadata/",
	"operators.operatorframework.io.bundle.package.v1":   "",
	"operators.operatorframework.io.bundle.channels.v1":  "",
}

func main() {
	strict := flag.Bool("strict", false, "fail on warnings too")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: olm-validate [-strict] BUNDLE_DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)

	errs, warns := 0, 0
	report := func(level, what, detail string) {
		fmt.Printf("%s %s: %s\n", level, what, detail)
		if level == "ERROR" {
			errs++
		} else {
			warns++
		}
	}

	for _, problem := range checkFormat(dir) {
		report("ERROR", "bundle format", problem)
	}

	bundle, err := manifests.GetBundleFromDir(dir)
	if err != nil || bundle == nil {
		report("ERROR", "bundle", fmt.Sprintf("cannot load %s: %v", dir, err))
		summary(errs, warns)
		os.Exit(1)
	}

	validators := validation.DefaultBundleValidators.WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
		validation.ObjectValidator,
	)
	objects := bundle.ObjectsToValidate()
	// The deprecated-API checks read the target Kubernetes version from this optional value;
	// without it they use the CSV's minKubeVersion.
	if bundle.CSV != nil && bundle.CSV.Spec.MinKubeVersion != "" {
		objects = append(objects, map[string]string{"k8s-version": bundle.CSV.Spec.MinKubeVersion})
	}
	for _, result := range validators.Validate(objects...) {
		for _, e := range result.Errors {
			report("ERROR", describe(result, e), e.Error())
		}
		for _, w := range result.Warnings {
			report("WARN", describe(result, w), w.Error())
		}
	}

	summary(errs, warns)
	if errs > 0 || (*strict && warns > 0) {
		os.Exit(1)
	}
}

func describe(result errors.ManifestResult, e errors.Error) string {
	name := result.Name
	if name == "" {
		name = "bundle"
	}
	return fmt.Sprintf("%s [%s]", name, e.Type)
}

func summary(errs, warns int) {
	fmt.Printf("olm-validate: %d error(s), %d warning(s)\n", errs, warns)
}

// checkFormat applies operator-registry's directory rules: manifests/ and metadata/ exist, and
// metadata/annotations.yaml has the registry+v1 annotations with the right values.
func checkFormat(dir string) []string {
	var problems []string
	for _, sub := range []string{"manifests", "metadata"} {
		if info, err := os.Stat(filepath.Join(dir, sub)); err != nil || !info.IsDir() {
			problems = append(problems, fmt.Sprintf("%s/ is missing", sub))
		}
	}
	path := filepath.Join(dir, "metadata", "annotations.yaml")
	raw, err := os.ReadFile(path)
	if err != nil {
		return append(problems, fmt.Sprintf("cannot read metadata/annotations.yaml: %v", err))
	}
	var file struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(raw, &file); err != nil {
		return append(problems, fmt.Sprintf("metadata/annotations.yaml: %v", err))
	}
	keys := make([]string, 0, len(requiredAnnotations))
	for k := range requiredAnnotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		want := requiredAnnotations[key]
		got, ok := file.Annotations[key]
		switch {
		case !ok || got == "":
			problems = append(problems, fmt.Sprintf("metadata/annotations.yaml lacks %s", key))
		case want != "" && got != want:
			problems = append(problems, fmt.Sprintf("metadata/annotations.yaml: %s is %q, must be %q", key, got, want))
		}
	}
	return problems
}
