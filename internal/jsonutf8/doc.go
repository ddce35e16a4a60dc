// Package jsonutf8 finds, in JSON text, what encoding/json silently
// repairs when it decodes a string: bytes that are not UTF-8 and \u
// escapes of unpaired UTF-16 surrogates (\ud800 alone). encoding/json turns
// both into U+FFFD, so a value checked after decoding has already lost
// them; callers that must refuse such input, not store a replacement,
// check the raw text with Check first. Used by the admin API (request
// bodies) and the key store (import files).
package jsonutf8
