package generator

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/compiler/protogen"
)

// maxRouteLen is the longest route the Pomelo wire protocol can carry (its
// route length is one byte).
const maxRouteLen = 255

const emptyFullName = "google.protobuf.Empty"

// kind is what an annotated service is.
type kind int

const (
	kindHandler kind = iota + 1
	kindRemote
	kindPush
)

func (k kind) String() string {
	switch k {
	case kindHandler:
		return "handler"
	case kindRemote:
		return "remote"
	case kindPush:
		return "push"
	}
	return "unknown"
}

// fileModel is what one .proto file to generate contributes.
type fileModel struct {
	file     *protogen.File
	services []*service
}

// service is an annotated service.
type service struct {
	file       *protogen.File
	proto      *protogen.Service
	kind       kind
	serverType string // HANDLER and REMOTE
	handler    string // HANDLER: the handler part of its routes
	methods    []*method
}

// method is one method of an annotated service.
type method struct {
	proto *protogen.Method
	// route is the handler route ("chat.chatHandler.send"), the push route
	// ("onChat") or the Connect procedure ("/chat.v1.ChatRemote/Join").
	route string
	// routeConst is the Go name of the constant holding route.
	routeConst string
	notify     bool
	aliases    []alias
}

// alias is an extra route of a HANDLER method.
type alias struct {
	name       string
	route      string
	routeConst string
}

// where names a place in the request for error messages.
func where(s *protogen.Service, m *protogen.Method) string {
	w := fmt.Sprintf("%s: service %s", s.Desc.ParentFile().Path(), s.Desc.FullName())
	if m != nil {
		w += fmt.Sprintf(": method %s", m.Desc.Name())
	}
	return w
}

// problems collects generation errors.
type problems []error

func (p *problems) add(s *protogen.Service, m *protogen.Method, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", where(s, m), fmt.Sprintf(format, args...)))
}

func (p problems) err() error {
	return errors.Join(p...)
}

// routeOwner remembers who declared a route, to report duplicates.
type routeOwner struct {
	where    string
	generate bool
}

// parse reads and checks the annotations of every file of the request. It
// reports problems of the files to generate only; services of the other
// files (dependencies) are read to find route clashes with them.
func parse(gen *protogen.Plugin) ([]*fileModel, error) {
	ann, err := loadAnnotations(gen)
	if err != nil {
		return nil, err
	}
	var all problems
	routes := make(map[string]routeOwner)
	var files []*fileModel
	for _, f := range gen.Files {
		fm := &fileModel{file: f}
		for _, s := range f.Services {
			var probs problems
			svc := parseService(ann, f, s, &probs)
			if !f.Generate {
				if svc != nil && len(probs) == 0 {
					claimRoutes(svc, routes, &probs)
				}
				continue
			}
			if svc != nil && len(probs) == 0 {
				claimRoutes(svc, routes, &probs)
			}
			all = append(all, probs...)
			if svc != nil {
				fm.services = append(fm.services, svc)
			}
		}
		if f.Generate && len(fm.services) > 0 {
			files = append(files, fm)
		}
	}
	if len(all) == 0 {
		checkIdentifiers(gen, files, &all)
	}
	if err := all.err(); err != nil {
		return nil, err
	}
	return files, nil
}

func parseService(ann *annotations, f *protogen.File, s *protogen.Service, probs *problems) *service {
	sa, err := ann.serviceOf(s)
	if err != nil {
		probs.add(s, nil, "cannot read the pomelo.v1.service annotation: %v", err)
		return nil
	}
	if sa == nil {
		return nil // not a Pomelo service
	}
	svc := &service{file: f, proto: s, serverType: sa.serverType}
	switch sa.kind {
	case "SERVICE_KIND_HANDLER":
		svc.kind = kindHandler
	case "SERVICE_KIND_REMOTE":
		svc.kind = kindRemote
	case "SERVICE_KIND_PUSH":
		svc.kind = kindPush
	case "SERVICE_KIND_UNSPECIFIED":
		probs.add(s, nil, "the pomelo.v1.service annotation has no kind: set kind to SERVICE_KIND_HANDLER, SERVICE_KIND_REMOTE or SERVICE_KIND_PUSH")
		return nil
	default:
		probs.add(s, nil, "the pomelo.v1.service annotation has an unknown kind %d", sa.kindNumber)
		return nil
	}

	switch svc.kind {
	case kindHandler, kindRemote:
		if sa.serverType == "" {
			probs.add(s, nil, "a %s service needs a server_type in its pomelo.v1.service annotation", strings.ToUpper(svc.kind.String()))
		} else if err := checkName(sa.serverType); err != nil {
			probs.add(s, nil, "server_type %q %v", sa.serverType, err)
		}
	case kindPush:
		if sa.serverType != "" {
			probs.add(s, nil, "server_type has no meaning on a PUSH service; remove it")
		}
	}
	if svc.kind == kindHandler {
		svc.handler = lowerFirst(string(s.Desc.Name()))
		if sa.name != "" {
			if err := checkName(sa.name); err != nil {
				probs.add(s, nil, "name %q %v", sa.name, err)
			}
			svc.handler = sa.name
		}
	} else if sa.name != "" {
		probs.add(s, nil, "name has no meaning on a %s service; remove it", strings.ToUpper(svc.kind.String()))
	}

	for _, m := range s.Methods {
		ma, err := ann.methodOf(m)
		if err != nil {
			probs.add(s, m, "cannot read the pomelo.v1.method annotation: %v", err)
			continue
		}
		if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
			probs.add(s, m, "streaming methods are not supported in a %s service", strings.ToUpper(svc.kind.String()))
			continue
		}
		mm := &method{proto: m, notify: ma.notify}
		switch svc.kind {
		case kindHandler:
			part := lowerFirst(string(m.Desc.Name()))
			if ma.name != "" {
				if err := checkName(ma.name); err != nil {
					probs.add(s, m, "name %q %v", ma.name, err)
				}
				part = ma.name
			}
			mm.route = svc.serverType + "." + svc.handler + "." + part
			mm.routeConst = s.GoName + m.GoName + "Route"
			if ma.notify && m.Output.Desc.FullName() != emptyFullName {
				probs.add(s, m, "a notify method must return %s, not %s (a notify never gets a response)", emptyFullName, m.Output.Desc.FullName())
			}
			seen := make(map[string]bool)
			for _, a := range ma.aliases {
				if err := checkName(a); err != nil {
					probs.add(s, m, "alias %q %v", a, err)
					continue
				}
				if seen[a] {
					probs.add(s, m, "alias %q is listed twice", a)
					continue
				}
				seen[a] = true
				id := identPart(a)
				if id == "" {
					probs.add(s, m, "alias %q has no letter or digit to name its Go constant after", a)
					continue
				}
				mm.aliases = append(mm.aliases, alias{
					name:       a,
					route:      svc.serverType + "." + svc.handler + "." + a,
					routeConst: s.GoName + m.GoName + id + "Route",
				})
			}
		case kindRemote:
			mm.route = "/" + string(s.Desc.FullName()) + "/" + string(m.Desc.Name())
			mm.routeConst = s.GoName + m.GoName + "Procedure"
			if ma.name != "" || ma.notify || len(ma.aliases) > 0 {
				probs.add(s, m, "the pomelo.v1.method annotation (name, notify, aliases) has no meaning on a REMOTE method; remove it")
			}
		case kindPush:
			mm.route = lowerFirst(string(m.Desc.Name()))
			if ma.name != "" {
				if err := checkName(ma.name); err != nil {
					probs.add(s, m, "name %q %v", ma.name, err)
				}
				mm.route = ma.name
			}
			mm.routeConst = s.GoName + m.GoName + "Route"
			if ma.notify || len(ma.aliases) > 0 {
				probs.add(s, m, "notify and aliases have no meaning on a PUSH method; remove them")
			}
		}
		if svc.kind != kindRemote {
			for _, r := range mm.routes() {
				if len(r) > maxRouteLen {
					probs.add(s, m, "route %q is %d bytes long; the Pomelo protocol allows at most %d", r, len(r), maxRouteLen)
				}
			}
		}
		svc.methods = append(svc.methods, mm)
	}
	return svc
}

// serverTypeConst is the Go name of the constant holding the server type
// of a HANDLER or REMOTE service ("ChatHandlerServerType").
func (svc *service) serverTypeConst() string { return svc.proto.GoName + "ServerType" }

// routes returns the method's route and its alias routes.
func (m *method) routes() []string {
	out := []string{m.route}
	for _, a := range m.aliases {
		out = append(out, a.route)
	}
	return out
}

// claimRoutes records the routes of svc, reporting the ones already taken.
// Handler and push routes share one name space: the client's route
// dictionary.
func claimRoutes(svc *service, routes map[string]routeOwner, probs *problems) {
	for _, m := range svc.methods {
		for i, r := range m.routes() {
			w := where(svc.proto, m.proto)
			if i > 0 {
				w += fmt.Sprintf(" (alias %q)", m.aliases[i-1].name)
			}
			if old, dup := routes[r]; dup {
				if svc.file.Generate || old.generate {
					probs.add(svc.proto, m.proto, "duplicate route %q: also declared by %s", r, old.where)
				}
				continue
			}
			routes[r] = routeOwner{where: w, generate: svc.file.Generate}
		}
	}
}

// checkName checks a server type, handler name, method name, alias or push
// route: non-empty, no dot (dots separate route parts), no white space.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case strings.Contains(s, "."):
		return errors.New("contains a '.', which separates the parts of a route")
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return errors.New("contains white space")
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	return nil
}

// lowerFirst lower-cases the first letter of s, as Pomelo names handlers
// and methods ("ChatHandler" -> "chatHandler").
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToLower(r)) + s[n:]
}

// identPart turns an alias into a part of a Go identifier: it drops every
// character that is not a letter or digit and upper-cases the first letter
// of each run ("entry" -> "Entry", "get-info" -> "GetInfo").
func identPart(s string) string {
	var b strings.Builder
	upper := true
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			upper = true
			continue
		}
		if upper {
			r = unicode.ToUpper(r)
			upper = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// checkIdentifiers reports generated Go identifiers that clash with each
// other or with what protoc-gen-go declares in the same Go package, and
// client methods that clash within a client type.
func checkIdentifiers(gen *protogen.Plugin, files []*fileModel, probs *problems) {
	byPkg := make(map[protogen.GoImportPath]map[string]string)
	pkg := func(p protogen.GoImportPath) map[string]string {
		if byPkg[p] == nil {
			byPkg[p] = make(map[string]string)
			for _, f := range gen.Files {
				if f.GoImportPath == p {
					declaredByProtocGenGo(f, byPkg[p])
				}
			}
		}
		return byPkg[p]
	}
	for _, fm := range files {
		names := pkg(fm.file.GoImportPath)
		for _, svc := range fm.services {
			for _, id := range svc.identifiers() {
				if other, clash := names[id.name]; clash {
					probs.add(svc.proto, id.method, "generated Go identifier %s clashes with %s; rename the service or method", id.name, other)
					continue
				}
				names[id.name] = fmt.Sprintf("%s of %s", id.name, where(svc.proto, id.method))
			}
			methods := make(map[string]*protogen.Method)
			for _, cm := range svc.clientMethods() {
				if other, clash := methods[cm.name]; clash {
					probs.add(svc.proto, cm.method, "generated client method %s.%s clashes with the one generated for method %s; rename a method", svc.proto.GoName+"Client", cm.name, other.Desc.Name())
					continue
				}
				methods[cm.name] = cm.method
			}
		}
	}
}

type ident struct {
	name   string
	method *protogen.Method // nil for service-level identifiers
}

// identifiers lists the package-level Go identifiers generated for svc.
func (svc *service) identifiers() []ident {
	n := svc.proto.GoName
	var out []ident
	add := func(m *protogen.Method, names ...string) {
		for _, name := range names {
			out = append(out, ident{name: name, method: m})
		}
	}
	add(nil, n+"Routes")
	switch svc.kind {
	case kindHandler:
		add(nil, svc.serverTypeConst(), n+"Server", "Unimplemented"+n+"Server", "Register"+n+"Server", n+"Client", "New"+n+"Client")
	case kindRemote:
		add(nil, svc.serverTypeConst(), n+"ServiceName", n+"Server", "Unimplemented"+n+"Server", "Register"+n+"Server", n+"Client", "New"+n+"Client")
	}
	for _, m := range svc.methods {
		add(m.proto, m.routeConst)
		for _, a := range m.aliases {
			add(m.proto, a.routeConst)
		}
		if svc.kind == kindPush {
			add(m.proto, n+m.proto.GoName)
		}
	}
	return out
}

type clientMethod struct {
	name   string
	method *protogen.Method
}

// clientMethods lists the methods of the generated client type of svc.
func (svc *service) clientMethods() []clientMethod {
	var out []clientMethod
	for _, m := range svc.methods {
		g := m.proto.GoName
		switch {
		case svc.kind == kindHandler && m.notify:
			out = append(out, clientMethod{g, m.proto})
		case svc.kind == kindHandler:
			out = append(out, clientMethod{g, m.proto}, clientMethod{g + "Notify", m.proto})
		case svc.kind == kindRemote:
			out = append(out, clientMethod{g, m.proto}, clientMethod{g + "To", m.proto}, clientMethod{g + "All", m.proto})
		}
	}
	return out
}

// declaredByProtocGenGo adds the package-level identifiers protoc-gen-go
// declares for f.
func declaredByProtocGenGo(f *protogen.File, names map[string]string) {
	add := func(name, what string) {
		if _, ok := names[name]; !ok {
			names[name] = fmt.Sprintf("%s (declared by protoc-gen-go for %s in %s)", name, what, f.Desc.Path())
		}
	}
	add(f.GoDescriptorIdent.GoName, "the file")
	var enums func([]*protogen.Enum)
	enums = func(es []*protogen.Enum) {
		for _, e := range es {
			add(e.GoIdent.GoName, string(e.Desc.FullName()))
			add(e.GoIdent.GoName+"_name", string(e.Desc.FullName()))
			add(e.GoIdent.GoName+"_value", string(e.Desc.FullName()))
			for _, v := range e.Values {
				add(v.GoIdent.GoName, string(v.Desc.FullName()))
			}
		}
	}
	var messages func([]*protogen.Message)
	messages = func(ms []*protogen.Message) {
		for _, m := range ms {
			add(m.GoIdent.GoName, string(m.Desc.FullName()))
			for _, fd := range m.Fields {
				if fd.Oneof != nil && !fd.Oneof.Desc.IsSynthetic() {
					add(fd.GoIdent.GoName, string(fd.Desc.FullName()))
				}
			}
			for _, x := range m.Extensions {
				add(x.GoIdent.GoName, string(x.Desc.FullName()))
			}
			enums(m.Enums)
			messages(m.Messages)
		}
	}
	enums(f.Enums)
	messages(f.Messages)
	for _, x := range f.Extensions {
		add(x.GoIdent.GoName, string(x.Desc.FullName()))
	}
}
