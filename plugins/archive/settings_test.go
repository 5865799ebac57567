package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // list, str, n, d, b
		wantErr bool
	}{
		{name: "defaults", want: []string{"a,b", "def", "1", "1s", "false"}},
		{
			name: "flags, others' flags skipped",
			args: []string{"-nats-url", "nats://x:4222", "-list", "c", "--list=d,e", "-str=s", "-n", "7", "-log-level", "debug", "-d", "2m", "-b"},
			want: []string{"c,d,e", "s", "7", "2m0s", "true"},
		},
		{
			name: "environment fallback",
			env:  map[string]string{"T_LIST": "x, y", "T_STR": "envs", "T_N": "3", "T_D": "5ms", "T_B": "true"},
			want: []string{"x,y", "envs", "3", "5ms", "true"},
		},
		{
			name: "flag wins over environment",
			args: []string{"-str", "flag", "-b=false"},
			env:  map[string]string{"T_STR": "env", "T_B": "true"},
			want: []string{"a,b", "flag", "1", "1s", "false"},
		},
		{name: "nothing after --", args: []string{"--", "-str", "x"}, want: []string{"a,b", "def", "1", "1s", "false"}},
		{name: "bad flag value", args: []string{"-n", "many"}, wantErr: true},
		{name: "bad environment value", env: map[string]string{"T_D": "soon"}, wantErr: true},
		{name: "missing value", args: []string{"-str"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s := newSettings("test")
			list := newListFlag("a", "b")
			s.Var(list, "list", "T_LIST", "a list")
			str := s.String("str", "T_STR", "def", "a string")
			n := s.Int("n", "T_N", 1, "a number")
			d := s.Duration("d", "T_D", time.Second, "a duration")
			b := s.Bool("b", "T_B", false, "a bool")
			dst := flag.NewFlagSet("dst", flag.ContinueOnError)
			dst.SetOutput(io.Discard)
			dst.String("nats-url", "", "")
			dst.String("log-level", "", "")
			err := s.parse(tt.args, dst)
			if tt.wantErr {
				if err == nil {
					t.Fatal("parse succeeded; want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{list.String(), *str, strconv.Itoa(*n), d.String(), strconv.FormatBool(*b)}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// Main parses the whole command line again: it must accept our
			// flags and leave the values alone.
			if err := dst.Parse(tt.args); err != nil {
				t.Fatalf("second parse: %v", err)
			}
			got = []string{list.String(), *str, strconv.Itoa(*n), d.String(), strconv.FormatBool(*b)}
			if !slices.Equal(got, tt.want) {
				t.Errorf("after the second parse got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSettingsHelp(t *testing.T) {
	s := newSettings("test")
	s.String("str", "T_STR", "def", "a string")
	dst := flag.NewFlagSet("dst", flag.ContinueOnError)
	if err := s.parse([]string{"-str", "x", "-h"}, dst); !errors.Is(err, errHelp) {
		t.Fatalf("got %v, want errHelp", err)
	}
	if dst.Lookup("str") == nil {
		t.Error("-str is not defined on the destination flag set, so -h would not list it")
	}
}
