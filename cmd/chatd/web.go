package main

import (
	"net/http"

	"github.com/chatd/chatd/web"
)

// webHandler serves the browser client (web/) at /.
func webHandler() http.Handler { return web.Handler() }
