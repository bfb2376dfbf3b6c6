module github.com/chatd/chatd/bench

go 1.26.0

require (
	github.com/chatd/chatd v0.0.0-00010101000000-000000000000
	github.com/chromedp/chromedp v0.23.1
	github.com/coder/websocket v1.8.15
	github.com/gobwas/ws v1.5.0
	github.com/gorilla/websocket v1.5.3
)

require (
	github.com/chromedp/cdproto v0.160.1 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
)

replace github.com/chatd/chatd => ../
