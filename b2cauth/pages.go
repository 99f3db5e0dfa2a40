package b2cauth

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// pageData is what an error or status page shows. Every value is escaped.
type pageData struct {
	Title    string
	Code     string
	Message  string
	Link     string
	LinkText string
	// A second link, for a page that offers two ways on.
	OtherLink     string
	OtherLinkText string
	// A button that POSTs to FormAction, for what a link must not do alone.
	FormAction string
	FormButton string
}

func renderPage(w http.ResponseWriter, status int, d pageData) error {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, d); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
code,pre{background:#f4f4f4;padding:.2rem .4rem}pre{white-space:pre-wrap;padding:1rem}</style></head>
<body><h1>{{.Title}}</h1>
{{with .Code}}<p>Error code: <code id="error-code">{{.}}</code></p>{{end}}
<p>{{.Message}}</p>
{{with .FormAction}}<form method="post" action="{{.}}"><button type="submit">{{$.FormButton}}</button></form>{{end}}
{{with .Link}}<p><a href="{{.}}">{{$.LinkText}}</a></p>{{end}}
{{with .OtherLink}}<p><a href="{{.}}">{{$.OtherLinkText}}</a></p>{{end}}
</body></html>
`))

// renderResubmit posts a cross-site form_post again from this site, so the
// browser sends the SameSite=Lax flow cookie with it.
func renderResubmit(w http.ResponseWriter, action string, params url.Values) error {
	params.Set("b2c_resubmit", "1")
	return renderAutoSubmit(w, http.MethodPost, action, params)
}

// renderAutoSubmit is a page whose form sends itself: GET or POST to
// action with params. A GET form carries a URL that must stay out of
// Caddy's access log (which records a redirect's Location).
func renderAutoSubmit(w http.ResponseWriter, method, action string, params url.Values) error {
	var buf bytes.Buffer
	if err := resubmitTemplate.Execute(&buf, map[string]any{"Method": strings.ToLower(method), "Action": action, "Params": params}); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	_, err := w.Write(buf.Bytes())
	return err
}

var resubmitTemplate = template.Must(template.New("resubmit").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Working…</title></head>
<body onload="document.forms[0].submit()">
<form method="{{.Method}}" action="{{.Action}}">
{{range $k, $vs := .Params}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">
{{end}}{{end}}<noscript><button type="submit">Continue</button></noscript>
</form></body></html>
`))
