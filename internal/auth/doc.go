// Package auth decides who may open a chatd WebSocket connection, before the
// upgrade: it verifies the JWT a client presents (Verifier), finds that token
// in the request (TokenFromRequest), and checks the browser's Origin against
// an allow-list (OriginPolicy). It also mints HS256 tokens for development
// (Signer, NewDevSecret).
//
// Tokens are verified against exactly one configured key, and the accepted
// algorithm follows from that key's type (HS256 for a shared secret, RS256,
// ES256 or EdDSA for a PEM public key). A token's own "alg" header never
// chooses how it is checked: that is what makes "alg: none" and algorithm
// confusion (an HS256 token signed with the public key as the HMAC secret)
// fail instead of verifying.
//
// Errors from Verify wrap one of the Err* sentinels, and Reason turns any of
// them into a short label for logs and metrics. No error message contains the
// token, because the server logs these messages and a token in a log is a
// credential anyone with log access can replay.
//
// Everything here is safe for concurrent use once constructed, and nothing
// does I/O: the package is called on every upgrade request.
package auth
