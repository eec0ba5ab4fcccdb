package model

// blockedGramian: see gramian.
const blockedGramian = true
