module up/tests/servers/go-http

go 1.19
