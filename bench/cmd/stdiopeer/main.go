// Command stdiopeer answers JSON lines: each line of standard input is a
// greet.Request, answered by one line of standard output, until standard
// input ends. The plugin protocol a program invents when it has none.
package main

import (
	"bufio"
	"log"
	"os"

	"github.com/plugbus/plugbus/bench/greet"
)

func main() {
	log.SetPrefix("stdiopeer: ")
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 16<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		reply, err := greet.Greet(in.Bytes())
		if err != nil {
			log.Fatal(err)
		}
		out.Write(reply)
		out.WriteByte('\n')
		if err := out.Flush(); err != nil {
			log.Fatal(err)
		}
	}
	if err := in.Err(); err != nil {
		log.Fatal(err)
	}
}
