// Package codehealth checks the repository's code itself, as tests: no
// function longer than a screen, no init functions, no comments that cite
// an issue tracker the reader does not have.
package codehealth
