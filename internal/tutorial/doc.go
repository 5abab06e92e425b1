// Package tutorial checks that docs/first-service.md works as written: its
// test copies the repository, writes the files the page shows, and runs
// the commands it shows, against a real Consul agent started by 'moat dev'.
//
// The page marks its code blocks for the test with HTML comments, which
// Markdown does not render:
//
//	<!-- tutorial: file PATH -->            the next block is written to PATH
//	<!-- tutorial: run -->                  the next block runs with bash and must succeed
//	<!-- tutorial: background until "S" --> the next block runs in the background until it prints S
//	<!-- tutorial: output -->               each line of the next block is in the last run's output
package tutorial
