package generator

import (
	"fmt"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Full names of the pomelo.v1 annotations (proto/pomelo/v1/options.proto).
const (
	serviceExtension protoreflect.FullName = "pomelo.v1.service"
	methodExtension  protoreflect.FullName = "pomelo.v1.method"
)

// annotations reads the pomelo.v1 annotations off service and method options.
//
// The generator must not import the Go package generated from
// options.proto: it has to work from an empty gen/ directory and right after
// options.proto changed. So it builds the extension types at run time with
// dynamicpb from the descriptors in the request, and re-parses each options
// message with a resolver that knows them. Fields are then read by name.
type annotations struct {
	resolver *protoregistry.Types
	service  protoreflect.ExtensionType // nil when no file of the request declares it
	method   protoreflect.ExtensionType
}

// serviceAnnotation is pomelo.v1.ServiceOptions.
type serviceAnnotation struct {
	kind       string // enum value name, such as "SERVICE_KIND_HANDLER"
	kindNumber int32
	serverType string
	name       string
}

// methodAnnotation is pomelo.v1.MethodOptions.
type methodAnnotation struct {
	name    string
	notify  bool
	aliases []string
}

func loadAnnotations(gen *protogen.Plugin) (*annotations, error) {
	a := &annotations{resolver: new(protoregistry.Types)}
	for _, f := range gen.Files {
		xds := f.Desc.Extensions()
		for i := range xds.Len() {
			xd := xds.Get(i)
			var want protoreflect.FullName
			switch xd.FullName() {
			case serviceExtension:
				want = "google.protobuf.ServiceOptions"
			case methodExtension:
				want = "google.protobuf.MethodOptions"
			default:
				continue
			}
			if xd.ContainingMessage().FullName() != want || xd.Kind() != protoreflect.MessageKind || xd.IsList() {
				return nil, fmt.Errorf("%s: extension %s must be a singular message extending %s", f.Desc.Path(), xd.FullName(), want)
			}
			xt := dynamicpb.NewExtensionType(xd)
			if err := a.resolver.RegisterExtension(xt); err != nil {
				return nil, fmt.Errorf("%s: %v", f.Desc.Path(), err)
			}
			if xd.FullName() == serviceExtension {
				a.service = xt
			} else {
				a.method = xt
			}
		}
	}
	return a, nil
}

// read returns the value of extension xt in opts, re-parsed with the
// dynamic extension types, and false when opts does not carry it.
func (a *annotations) read(opts proto.Message, xt protoreflect.ExtensionType) (protoreflect.Message, bool, error) {
	if xt == nil || opts == nil || !opts.ProtoReflect().IsValid() {
		return nil, false, nil
	}
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(opts)
	if err != nil {
		return nil, false, err
	}
	fresh := opts.ProtoReflect().Type().New()
	if err := (proto.UnmarshalOptions{Resolver: a.resolver, AllowPartial: true}).Unmarshal(b, fresh.Interface()); err != nil {
		return nil, false, err
	}
	xd := xt.TypeDescriptor()
	if !fresh.Has(xd) {
		return nil, false, nil
	}
	return fresh.Get(xd).Message(), true, nil
}

func (a *annotations) serviceOf(s *protogen.Service) (*serviceAnnotation, error) {
	m, ok, err := a.read(s.Desc.Options(), a.service)
	if err != nil || !ok {
		return nil, err
	}
	kind, err := field(m, "kind", protoreflect.EnumKind)
	if err != nil {
		return nil, err
	}
	serverType, err := field(m, "server_type", protoreflect.StringKind)
	if err != nil {
		return nil, err
	}
	name, err := field(m, "name", protoreflect.StringKind)
	if err != nil {
		return nil, err
	}
	out := &serviceAnnotation{
		kindNumber: int32(kind.Enum()),
		serverType: serverType.String(),
		name:       name.String(),
	}
	fd := m.Descriptor().Fields().ByName("kind")
	if v := fd.Enum().Values().ByNumber(kind.Enum()); v != nil {
		out.kind = string(v.Name())
	}
	return out, nil
}

func (a *annotations) methodOf(m *protogen.Method) (*methodAnnotation, error) {
	msg, ok, err := a.read(m.Desc.Options(), a.method)
	if err != nil || !ok {
		return &methodAnnotation{}, err
	}
	name, err := field(msg, "name", protoreflect.StringKind)
	if err != nil {
		return nil, err
	}
	notify, err := field(msg, "notify", protoreflect.BoolKind)
	if err != nil {
		return nil, err
	}
	aliases, err := field(msg, "aliases", protoreflect.StringKind)
	if err != nil {
		return nil, err
	}
	out := &methodAnnotation{name: name.String(), notify: notify.Bool()}
	if fd := msg.Descriptor().Fields().ByName("aliases"); fd.IsList() {
		l := aliases.List()
		for i := range l.Len() {
			out.aliases = append(out.aliases, l.Get(i).String())
		}
	} else if s := aliases.String(); s != "" {
		out.aliases = []string{s}
	}
	return out, nil
}

// field returns the value of the named field of m, checking its kind, so
// that an incompatible edit of options.proto fails loudly.
func field(m protoreflect.Message, name protoreflect.Name, kind protoreflect.Kind) (protoreflect.Value, error) {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil {
		return protoreflect.Value{}, fmt.Errorf("%s has no field %q: protoc-gen-pomelo does not match options.proto", m.Descriptor().FullName(), name)
	}
	if fd.Kind() != kind {
		return protoreflect.Value{}, fmt.Errorf("%s.%s is a %s, protoc-gen-pomelo expects a %s", m.Descriptor().FullName(), name, fd.Kind(), kind)
	}
	return m.Get(fd), nil
}
