package fileerr

import "testing"

func TestErrorsSortedAndPrinted(t *testing.T) {
	es := Errors{
		{File: "f.yaml", Line: 3, Col: 1, Path: "b", Msg: "second"},
		{File: "f.yaml", Msg: "whole file"},
		{File: "f.yaml", Line: 1, Col: 5, Path: "a", Msg: "first"},
		{File: "f.yaml", Line: 3, Col: 1, Path: "a", Msg: "same place, path a"},
	}
	es.Sort()
	want := "f.yaml: whole file\n" +
		"f.yaml:1:5: a: first\n" +
		"f.yaml:3:1: a: same place, path a\n" +
		"f.yaml:3:1: b: second"
	if got := es.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
