package generator_test

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	pomelov1 "github.com/pomelo-go/pomelo/gen/pomelo/v1"
	"github.com/pomelo-go/pomelo/protoc-gen-pomelo/generator"
	"github.com/pomelo-go/pomelo/runtime"
)

// update rewrites the golden files, and (without -short) rebuilds the
// descriptor sets with buf:
//
//	go test ./protoc-gen-pomelo/... -update
var update = flag.Bool("update", false, "rewrite testdata descriptor sets and golden files")

const (
	testdata = "../testdata"
	protoDir = testdata + "/proto" // the buf module the descriptor sets are built from
	goldDir  = testdata + "/golden"
)

// A descriptor set is built from protoDir with buf build --path for each of
// paths; its files under those paths are the files to generate.
type descriptorSet struct {
	name  string
	paths []string
}

var goldenSets = []descriptorSet{
	{"chat", []string{"golden/chat"}},
	{"overrides", []string{"golden/overrides"}},
	{"multi", []string{"golden/multi"}},
	{"plain", []string{"golden/plain"}},
}

// errorSets are wrong annotations, one per set, and what the error must say.
var errorSets = []struct {
	descriptorSet
	want []string
}{
	{badSet("notify_returns_message"), []string{"bad/notify_returns_message/x.proto", "service bad.notify_returns_message.H", "method Move", "notify method must return google.protobuf.Empty, not bad.notify_returns_message.Res"}},
	{badSet("handler_no_server_type"), []string{"bad/handler_no_server_type/x.proto", "service bad.handler_no_server_type.H", "HANDLER service needs a server_type"}},
	{badSet("remote_no_server_type"), []string{"service bad.remote_no_server_type.R", "REMOTE service needs a server_type"}},
	{badSet("duplicate_route"), []string{"method Walk", `duplicate route "area.h.move"`, "method Move"}},
	{badSet("duplicate_route_files"), []string{"bad/duplicate_route_files/b.proto", "service bad.duplicate_route_files.b.Other", `duplicate route "area.areaHandler.move"`, "also declared by bad/duplicate_route_files/a.proto: service bad.duplicate_route_files.AreaHandler: method Move"}},
	{badSet("duplicate_push_route"), []string{"service bad.duplicate_push_route.P2", "method Moved", `duplicate route "onMove"`, "service bad.duplicate_push_route.P1: method OnMove"}},
	{badSet("route_too_long"), []string{"method Move", "bytes long; the Pomelo protocol allows at most 255"}},
	{badSet("streaming_handler"), []string{"method Move", "streaming methods are not supported in a HANDLER service"}},
	{badSet("streaming_remote"), []string{"method Move", "streaming methods are not supported in a REMOTE service"}},
	{badSet("streaming_push"), []string{"method OnMove", "streaming methods are not supported in a PUSH service"}},
	{badSet("dotted_server_type"), []string{`server_type "area.v2" contains a '.'`}},
	{badSet("space_in_name"), []string{"method Move", `name "move now" contains white space`}},
	{badSet("unspecified_kind"), []string{"service bad.unspecified_kind.H", "annotation has no kind"}},
	{badSet("identifier_clash"), []string{"method Move", "generated Go identifier HMoveRoute clashes with HMoveRoute (declared by protoc-gen-go for bad.identifier_clash.HMoveRoute"}},
	{badSet("client_method_clash"), []string{"method MoveNotify", "generated client method HClient.MoveNotify clashes with the one generated for method Move"}},
	{badSet("option_misuse"), []string{"method Move", "has no meaning on a REMOTE method"}},
}

func badSet(name string) descriptorSet {
	return descriptorSet{"bad_" + name, []string{"bad/" + name}}
}

func allSets() []descriptorSet {
	out := append([]descriptorSet(nil), goldenSets...)
	for _, e := range errorSets {
		out = append(out, e.descriptorSet)
	}
	return out
}

func (d descriptorSet) file() string { return filepath.Join(testdata, d.name+".binpb") }

// buildSet runs buf build for d and returns the descriptor set it wrote.
func buildSet(t *testing.T, d descriptorSet) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), d.name+".binpb")
	args := []string{"tool", "-modfile=" + filepath.Join(repoRoot(t), "tools", "go.mod"), "buf", "build", "--as-file-descriptor-set", "-o", out}
	for _, p := range d.paths {
		args = append(args, "--path", p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = protoDir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("buf build %s: %v\n%s", d.name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDescriptorSets checks that the committed descriptor sets are what buf
// builds from testdata/proto today (with -update, it writes them). It runs
// buf, which takes minutes to build the first time.
func TestDescriptorSets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds descriptor sets with buf")
	}
	for _, d := range allSets() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			got := buildSet(t, d)
			if *update {
				if err := os.WriteFile(d.file(), got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(d.file())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: run go test ./protoc-gen-pomelo/... -update", d.file())
			}
		})
	}
}

// TestOptionsCopy checks that testdata's copy of options.proto is the real
// one.
func TestOptionsCopy(t *testing.T) {
	real, err := os.ReadFile("../../proto/pomelo/v1/options.proto")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(protoDir + "/pomelo/v1/options.proto")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(real, cp) {
		t.Fatalf("%s/pomelo/v1/options.proto differs from proto/pomelo/v1/options.proto: copy it over and run go test ./protoc-gen-pomelo/... -update", protoDir)
	}
}

func TestVersion(t *testing.T) {
	if generator.Version != runtime.Version {
		t.Fatalf("generator.Version = %q, runtime.Version = %q: keep them equal", generator.Version, runtime.Version)
	}
}

// generate runs the generator in-process on a committed descriptor set, as
// buf generate with paths=source_relative would.
func generate(t *testing.T, d descriptorSet) (*pluginpb.CodeGeneratorResponse, error) {
	t.Helper()
	b, err := os.ReadFile(d.file())
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		Parameter: proto.String("paths=source_relative"),
		ProtoFile: set.GetFile(),
	}
	for _, f := range set.GetFile() {
		for _, p := range d.paths {
			if strings.HasPrefix(f.GetName(), p+"/") {
				req.FileToGenerate = append(req.FileToGenerate, f.GetName())
			}
		}
	}
	if len(req.FileToGenerate) == 0 {
		t.Fatalf("%s has no file under %v", d.file(), d.paths)
	}
	gen, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := generator.Generate(gen); err != nil {
		return nil, err
	}
	resp := gen.Response()
	if resp.Error != nil {
		t.Fatalf("response error: %s", resp.GetError())
	}
	return resp, nil
}

func TestGolden(t *testing.T) {
	seen := make(map[string]string)
	for _, d := range goldenSets {
		t.Run(d.name, func(t *testing.T) {
			resp, err := generate(t, d)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range resp.GetFile() {
				name := f.GetName()
				if !strings.HasSuffix(name, generator.FileSuffix) {
					t.Errorf("generated %s, want only *%s files", name, generator.FileSuffix)
					continue
				}
				got = append(got, name)
				golden := filepath.Join(goldDir, path.Base(name)+".golden")
				if other, dup := seen[golden]; dup {
					t.Fatalf("%s and %s share the golden file %s: rename a test proto", name, other, golden)
				}
				seen[golden] = name
				if *update {
					if err := os.WriteFile(golden, []byte(f.GetContent()), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./protoc-gen-pomelo/... -update)", err)
				}
				if f.GetContent() != string(want) {
					t.Errorf("%s differs from %s (run go test ./protoc-gen-pomelo/... -update and review the diff):\n%s",
						name, golden, firstDiff(string(want), f.GetContent()))
				}
			}
			sort.Strings(got)
			t.Logf("generated %v", got)
			switch d.name {
			case "plain":
				if len(got) != 0 {
					t.Errorf("a file without annotated services generated %v", got)
				}
			case "multi":
				want := []string{"golden/multi/v1/lobby.pomelo.go", "golden/multi/v1/room.pomelo.go"}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("generated %v, want %v", got, want)
				}
			}
		})
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return ""
}

func TestErrors(t *testing.T) {
	for _, e := range errorSets {
		t.Run(e.name, func(t *testing.T) {
			resp, err := generate(t, e.descriptorSet)
			if err == nil {
				var names []string
				for _, f := range resp.GetFile() {
					names = append(names, f.GetName())
				}
				t.Fatalf("no error; generated %v", names)
			}
			t.Logf("error: %v", err)
			for _, w := range e.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestServerTypeConstantIsTheAnnotation checks, for every HANDLER and
// REMOTE service of the golden sets, that the generated file declares the
// service's server-type constant with the server_type of its annotation.
func TestServerTypeConstantIsTheAnnotation(t *testing.T) {
	checked := 0
	for _, d := range goldenSets {
		resp, err := generate(t, d)
		if err != nil {
			t.Fatal(err)
		}
		content := make(map[string]string)
		for _, f := range resp.GetFile() {
			content[f.GetName()] = f.GetContent()
		}
		b, err := os.ReadFile(d.file())
		if err != nil {
			t.Fatal(err)
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(b, &set); err != nil {
			t.Fatal(err)
		}
		for _, f := range set.GetFile() {
			generated := false
			for _, p := range d.paths {
				generated = generated || strings.HasPrefix(f.GetName(), p+"/")
			}
			if !generated {
				continue
			}
			for _, s := range f.GetService() {
				ann, _ := proto.GetExtension(s.GetOptions(), pomelov1.E_Service).(*pomelov1.ServiceOptions)
				if k := ann.GetKind(); k != pomelov1.ServiceKind_SERVICE_KIND_HANDLER && k != pomelov1.ServiceKind_SERVICE_KIND_REMOTE {
					continue
				}
				name := strings.TrimSuffix(f.GetName(), ".proto") + generator.FileSuffix
				want := "const " + s.GetName() + "ServerType = " + strconv.Quote(ann.GetServerType()) + "\n"
				if !strings.Contains(content[name], want) {
					t.Errorf("%s does not declare %q", name, strings.TrimSpace(want))
				}
				checked++
			}
		}
	}
	if checked == 0 {
		t.Fatal("no HANDLER or REMOTE service in the golden sets")
	}
}
