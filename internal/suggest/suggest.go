// Package suggest finds the known word a mistyped one was probably meant
// to be, for "did you mean" in configuration errors.
package suggest

// Closest is the option nearest to word by edit distance, if it is near
// enough to be a typo (at most a third of the word's length, and at most
// 3 edits); "" otherwise.
func Closest(word string, options []string) string {
	best, bestDist := "", min(3, max(1, len(word)/3))+1
	for _, o := range options {
		if d := distance(word, o); d < bestDist {
			best, bestDist = o, d
		}
	}
	return best
}

// DidYouMean is Closest as the end of an error message: `; did you mean
// "x"?`, or "".
func DidYouMean(word string, options []string) string {
	if c := Closest(word, options); c != "" {
		return "; did you mean \"" + c + "\"?"
	}
	return ""
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
