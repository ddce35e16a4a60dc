package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/keystore"
)

// TokenPrefix starts every admin token: "kgadm_…". API keys may not use it
// as their prefix.
const TokenPrefix = "kgadm"

// maxTokensFileSize bounds the tokens file, so that a wrong path (a log
// file, a device) fails quickly.
const maxTokensFileSize = 1 << 20

// maxTokenErrors bounds how many mistakes one read of the file reports.
const maxTokenErrors = 20

// TokenEntry is one entry of the tokens file: the token's name (the audit
// actor), the hex SHA-256 of the token, and the account it is bound to
// ("" for every account).
type TokenEntry struct {
	Name    string `yaml:"name" json:"name"`
	SHA256  string `yaml:"sha256" json:"sha256"`
	Account string `yaml:"account,omitempty" json:"account,omitempty"`
}

// NewToken returns a fresh admin token, shown once, and its entry for the
// tokens file. name and account follow the rules of a key's name and
// account id.
func NewToken(name, account string) (keystore.Secret, TokenEntry, error) {
	if err := checkEntry(name, account); err != nil {
		return "", TokenEntry{}, err
	}
	token, err := keystore.GenerateSecret(TokenPrefix)
	if err != nil {
		return "", TokenEntry{}, fmt.Errorf("admin: %w", err)
	}
	sum := sha256.Sum256([]byte(token.Reveal()))
	return token, TokenEntry{Name: name, SHA256: hex.EncodeToString(sum[:]), Account: account}, nil
}

// checkEntry applies the rules of a key's name and account id to a token's.
func checkEntry(name, account string) error {
	if err := keystore.ValidateName(name); err != nil {
		return fieldProblem(err)
	}
	if account != "" {
		if err := keystore.ValidateAccountID(account); err != nil {
			return fieldProblem(err)
		}
	}
	return nil
}

// fieldProblem is a keystore validation error in the words of the tokens
// file ("account" for account_id).
func fieldProblem(err error) error {
	var ve *keystore.ValidationError
	if errors.As(err, &ve) {
		field := ve.Field
		if field == "account_id" {
			field = "account"
		}
		return fmt.Errorf("%s: %s", field, ve.Problem)
	}
	return err
}

// Principal is who an admin token authenticates.
type Principal struct {
	Name    string // the token's name
	Account string // the one account it may manage; "" for every account
}

// Actor is the principal as the audit trail records it.
func (p Principal) Actor() string { return "admin:" + p.Name }

type tokenEntry struct {
	sum [sha256.Size]byte
	Principal
}

type tokenSet []tokenEntry

// authenticate returns the principal of a presented admin token. Its hash
// is compared with every entry, each in constant time.
func (ts tokenSet) authenticate(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range ts {
		if subtle.ConstantTimeCompare(sum[:], ts[i].sum[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return ts[found].Principal, true
}

// TokenFileError is one mistake in a tokens file. Its text is
// "file:line: message".
type TokenFileError struct {
	File string
	Line int
	Msg  string
}

func (e *TokenFileError) Error() string { return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg }

// Tokens is the set of valid admin tokens, read from a file and replaced
// on Reload. It is safe for concurrent use.
type Tokens struct {
	path string
	set  atomic.Pointer[tokenSet]
}

// LoadTokens reads the tokens file at path. The file is a YAML list:
//
//   - name: console-backend      # required: the audit actor, like a key's name
//     sha256: 5e88…              # required: hex SHA-256 of the token (64 digits)
//     account: acme              # optional: the one account the token may manage
//
// An empty list ([]) is valid and lets nobody in; an empty file is not (a
// file caught half-written must not lock everyone out or in). Unknown or
// duplicate keys, a hash listed twice, and anything but plain scalars are
// errors naming the line.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Path is the file the tokens are read from.
func (t *Tokens) Path() string { return t.path }

// Len is the number of valid tokens.
func (t *Tokens) Len() int { return len(*t.set.Load()) }

// Reload reads the file again and replaces the set; on any error it keeps
// the set it had.
func (t *Tokens) Reload() error {
	data, err := readFile(t.path)
	if err != nil {
		return err
	}
	set, err := parseTokens(t.path, data)
	if err != nil {
		return err
	}
	t.set.Store(&set)
	return nil
}

func (t *Tokens) authenticate(token string) (Principal, bool) {
	return t.set.Load().authenticate(token)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("admin tokens: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokensFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("admin tokens: read %s: %w", path, err)
	}
	if len(data) > maxTokensFileSize {
		return nil, &TokenFileError{File: path, Line: 1, Msg: fmt.Sprintf("larger than %d bytes", maxTokensFileSize)}
	}
	return data, nil
}

// tokenParser collects the mistakes of one tokens file.
type tokenParser struct {
	file string
	errs []error
}

func (tp *tokenParser) errorf(n *yaml.Node, format string, args ...any) {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	if len(tp.errs) == maxTokenErrors {
		tp.errs = append(tp.errs, &TokenFileError{File: tp.file, Line: line, Msg: "too many errors"})
	}
	if len(tp.errs) < maxTokenErrors {
		tp.errs = append(tp.errs, &TokenFileError{File: tp.file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

// yamlLine finds the line in a YAML syntax error ("yaml: line 3: …").
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError records a YAML syntax error at its line. Syntax errors do not
// quote the file's values, so no token can leak through them.
func (tp *tokenParser) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	tp.errs = append(tp.errs, &TokenFileError{File: tp.file, Line: line, Msg: msg})
}

func parseTokens(file string, data []byte) (tokenSet, error) {
	tp := &tokenParser{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			tp.errorf(nil, "empty file: want a list of tokens (name, sha256, account), or [] for none")
		} else {
			tp.yamlError(err)
		}
		return nil, errors.Join(tp.errs...)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		tp.errorf(&next, "more than one YAML document")
		return nil, errors.Join(tp.errs...)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.SequenceNode || !plain(root) {
		tp.errorf(root, "want a list of tokens (name, sha256, account), or [] for none")
		return nil, errors.Join(tp.errs...)
	}
	set := make(tokenSet, 0, len(root.Content))
	seen := map[[sha256.Size]byte]int{}
	for _, item := range root.Content {
		e, ok := tp.entry(item)
		if !ok {
			continue
		}
		if line, dup := seen[e.sum]; dup {
			tp.errorf(item, "sha256: the same token is listed on line %d", line)
			continue
		}
		seen[e.sum] = item.Line
		set = append(set, e)
	}
	if len(tp.errs) > 0 {
		return nil, errors.Join(tp.errs...)
	}
	return set, nil
}

// plain reports a node without anchors, aliases or tags, which a tokens
// file has no use for.
func plain(n *yaml.Node) bool {
	return n.Kind != yaml.AliasNode && n.Anchor == "" && (n.Tag == "" || n.Style&yaml.TaggedStyle == 0)
}

func (tp *tokenParser) entry(n *yaml.Node) (tokenEntry, bool) {
	if n.Kind != yaml.MappingNode || !plain(n) {
		tp.errorf(n, "each token is a mapping with name, sha256 and optionally account")
		return tokenEntry{}, false
	}
	values := map[string]*yaml.Node{}
	before := len(tp.errs)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || !plain(k):
			tp.errorf(k, "keys must be plain words")
		case k.Value != "name" && k.Value != "sha256" && k.Value != "account":
			tp.errorf(k, "unknown key: want name, sha256 or account")
		case values[k.Value] != nil:
			tp.errorf(k, "%s is given twice", k.Value)
		case v.Kind != yaml.ScalarNode || !plain(v) || v.Tag == "!!null":
			tp.errorf(v, "%s: want a string", k.Value)
		default:
			values[k.Value] = v
		}
	}
	for _, key := range []string{"name", "sha256"} {
		if values[key] == nil && len(tp.errs) == before {
			tp.errorf(n, "%s is missing", key)
		}
	}
	if len(tp.errs) > before {
		return tokenEntry{}, false
	}
	e := tokenEntry{Principal: Principal{Name: values["name"].Value}}
	if a := values["account"]; a != nil {
		// An account given empty (a template whose variable was unset)
		// must not turn into every account, as a null one does not.
		if a.Value == "" {
			tp.errorf(a, "account: must not be empty; leave account out for a token that manages every account")
			return tokenEntry{}, false
		}
		e.Account = a.Value
	}
	if err := checkEntry(e.Name, e.Account); err != nil {
		node := values["name"]
		if strings.HasPrefix(err.Error(), "account") {
			node = values["account"]
		}
		tp.errorf(node, "%v", err)
		return tokenEntry{}, false
	}
	sum, err := hex.DecodeString(values["sha256"].Value)
	if err != nil || len(sum) != sha256.Size {
		tp.errorf(values["sha256"], "sha256: want the 64 hex digits that 'keygate admin-token new' prints, never the token itself")
		return tokenEntry{}, false
	}
	copy(e.sum[:], sum)
	return e, true
}
