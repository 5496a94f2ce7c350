package api

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// TestClone fills every field of each stored kind with non-zero values by
// reflection, clones, changes everything reachable from the clone in place
// and checks the original did not move: a field added to an api type that
// its Clone shares (a map, slice or pointer) fails here.
func TestClone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		new   func() any
		clone func(any) any
	}{
		{"Node", func() any { return new(Node) }, func(v any) any { return v.(*Node).Clone() }},
		{"Cluster", func() any { return new(Cluster) }, func(v any) any { return v.(*Cluster).Clone() }},
		{"Service", func() any { return new(Service) }, func(v any) any { return v.(*Service).Clone() }},
		{"Task", func() any { return new(Task) }, func(v any) any { return v.(*Task).Clone() }},
		{"Network", func() any { return new(Network) }, func(v any) any { return v.(*Network).Clone() }},
		{"Secret", func() any { return new(Secret) }, func(v any) any { return v.(*Secret).Clone() }},
		{"Config", func() any { return new(Config) }, func(v any) any { return v.(*Config).Clone() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig, want := tc.new(), tc.new()
			fill(t, reflect.ValueOf(orig).Elem(), "v")
			fill(t, reflect.ValueOf(want).Elem(), "v")
			c := tc.clone(orig)
			if !reflect.DeepEqual(c, orig) {
				t.Fatalf("clone differs from the original:\n got %+v\nwant %+v", c, orig)
			}
			mutate(reflect.ValueOf(c).Elem())
			if reflect.DeepEqual(c, orig) {
				t.Fatal("mutate changed nothing: the test is broken")
			}
			if !reflect.DeepEqual(orig, want) {
				t.Fatalf("changing the clone changed the original:\n got %+v\nwant %+v", orig, want)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		if (*Node)(nil).Clone() != nil || (*Task)(nil).Clone() != nil || (*Service)(nil).Clone() != nil ||
			(*Network)(nil).Clone() != nil || (*Cluster)(nil).Clone() != nil {
			t.Fatal("Clone of nil is not nil")
		}
	})
}

var timeType = reflect.TypeFor[time.Time]()

// fill sets every field reachable from v to a non-zero value derived from path.
func fill(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.Type() == timeType {
		v.Set(reflect.ValueOf(time.Unix(int64(len(path))*1000, 0).UTC()))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				t.Fatalf("%s.%s: unexported field, teach fill about it", path, f.Name)
			}
			fill(t, v.Field(i), path+"."+f.Name)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), path+"*")
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := range 2 {
			k := reflect.New(v.Type().Key()).Elem()
			fill(t, k, fmt.Sprintf("%s{k%d}", path, i))
			e := reflect.New(v.Type().Elem()).Elem()
			fill(t, e, fmt.Sprintf("%s{%d}", path, i))
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(len(path)%100 + 1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(len(path)%100 + 1))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(float64(len(path)) + 0.5)
	default:
		t.Fatalf("%s: kind %s, teach fill about it", path, v.Kind())
	}
}

// mutate changes every value reachable from v in place: through pointers,
// into slice elements and map entries, never by replacing them.
func mutate(v reflect.Value) {
	if v.Type() == timeType {
		v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			mutate(v.Field(i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			mutate(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			mutate(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			mutate(e)
			v.SetMapIndex(k, e)
		}
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	}
}
