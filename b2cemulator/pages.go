package b2cemulator

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// page shows one of the policy's forms: signin, signup, reset or edit.
// values refill the form's fields.
func (e *Emulator) page(w http.ResponseWriter, req *authRequest, view, message string, values map[string]string) error {
	raw := url.Values{}
	for k, v := range req.raw {
		if k != "emulator_action" {
			raw[k] = v
		}
	}
	q := raw.Encode()
	data := map[string]any{
		"View":             view,
		"Tenant":           e.Tenant,
		"Policy":           req.policy,
		"Flavor":           e.Flavor,
		"Request":          q,
		"Error":            message,
		"Values":           values,
		"ForgotURL":        "?" + q + "&emulator_action=forgot",
		"CancelURL":        "?" + q + "&emulator_action=cancel",
		"SignupURL":        "?" + q + "&emulator_action=signup_view",
		"SocialCancelURL":  "?" + q + "&emulator_action=idp_cancel",
		"SocialFailureURL": "?" + q + "&emulator_action=idp_failure",
		"MailboxURL":       "/" + e.Tenant + ".onmicrosoft.com/emulator/mailbox",
	}
	// login_hint fills in the email; domain_hint is shown (there are no
	// real social providers to go to); ui_locales picks the language.
	if hint := req.raw.Get("login_hint"); hint != "" && values["email"] == "" {
		if values == nil {
			values = map[string]string{}
		}
		values["email"] = hint
	}
	data["Values"] = values
	// B2C offers "Keep me signed in" on its sign-in page, not on sign-up,
	// password reset or profile editing's.
	data["KeepMeSignedIn"] = e.KeepMeSignedIn > 0 && policyKind(req.policy) == "susi"
	data["DomainHint"] = req.raw.Get("domain_hint")
	data["Lang"], data["Text"] = pageText(req.raw.Get("ui_locales"))
	if e.demoUser && view == "signin" {
		data["DemoEmail"], data["DemoPassword"] = DemoUserEmail, DemoUserPassword
	}
	return render(w, http.StatusOK, "page", data)
}

// errorPage is B2C's page for a request it cannot send back: it names the
// code and shows the message.
func (e *Emulator) errorPage(w http.ResponseWriter, status int, code, msg string) error {
	b := e.localize(b2cError{code: code, msg: msg})
	return render(w, status, "error", map[string]any{"Code": b.code, "Description": b.description()})
}

func render(w http.ResponseWriter, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.}}</title>
<style>
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}
.box{max-width:380px;margin:48px auto;background:#fff;padding:32px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:22px;font-weight:600;margin:0 0 4px}.sub{color:#666;font-size:13px;margin-bottom:20px}
label{display:block;font-size:14px;margin:12px 0 4px}input{width:100%;box-sizing:border-box;padding:8px;font-size:15px;border:1px solid #aaa}
button{margin-top:20px;width:100%;padding:10px;font-size:15px;background:#0078d4;color:#fff;border:0;cursor:pointer}
button.secondary{background:#e0e0e0;color:#000}.error{color:#a80000;font-size:14px;margin:8px 0}
.demo{background:#fff4ce;padding:8px;font-size:13px;margin-bottom:12px}.links{font-size:14px;margin-top:16px}
.warn{background:#a80000;color:#fff;text-align:center;font-size:12px;padding:4px}
</style></head><body><div class="warn">b2c_emulator: a local test tenant, not Azure AD B2C. Never use it in production.</div>{{end}}

{{define "page"}}{{template "head" "Sign in"}}
<div class="box" id="api" data-view="{{.View}}">
<h1 lang="{{.Lang}}">{{if eq .View "signup"}}Create your account{{else if eq .View "reset"}}Reset your password{{else if eq .View "edit"}}Edit your profile{{else if eq .View "mfa"}}Verify your identity{{else}}{{.Text.signin}}{{end}}</h1>
<div class="sub">{{.Tenant}}.onmicrosoft.com · {{.Policy}}</div>
{{with .DomainHint}}<div class="sub" id="domainHint">domain_hint: {{.}} (the emulator has no social providers; sign in here)</div>{{end}}
{{with .DemoEmail}}<div class="demo" id="demoCredentials">Demo account: <b>{{.}}</b> / <b>{{$.DemoPassword}}</b></div>{{end}}
{{with .Error}}<div class="error" role="alert" id="errorMessage">{{.}}</div>{{end}}
<form method="post" id="localAccountForm" action="">
<input type="hidden" name="request" value="{{.Request}}">
{{if eq .View "mfa"}}
<input type="hidden" name="action" value="mfa">
<div class="sub" id="verificationSent">A one-time code was sent to {{index .Values "email"}} (the emulator's <a id="mailbox" href="{{.MailboxURL}}" target="_blank">mailbox</a> shows it).</div>
<label for="verificationCode">Verification code</label><input id="verificationCode" name="code" autocomplete="one-time-code" inputmode="numeric" required autofocus>
<button type="submit" id="continue">Verify</button>
{{else if eq .View "signin"}}
<input type="hidden" name="action" value="signin">
<label for="email">{{.Text.email}}</label><input type="email" id="email" name="email" autocomplete="username" value="{{index .Values "email"}}" required autofocus>
<label for="password">{{.Text.password}}</label><input type="password" id="password" name="password" autocomplete="current-password" required>
{{if .KeepMeSignedIn}}<div class="links"><input type="checkbox" id="rememberMe" name="rememberMe" value="true"><label for="rememberMe" style="display:inline">Keep me signed in</label></div>{{end}}
<div class="links"><a id="forgotPassword" href="{{.ForgotURL}}">{{.Text.forgot}}</a></div>
<button type="submit" id="next">{{.Text.signin}}</button>
{{if ne .Flavor "entra_id"}}<div class="links">Don't have an account? <a id="createAccount" href="{{.SignupURL}}">Sign up now</a></div>{{end}}
{{if eq .Flavor "b2c"}}<div class="links">Social account (emulated): <a id="socialCancel" href="{{.SocialCancelURL}}">cancel at the provider</a> · <a id="socialFailure" href="{{.SocialFailureURL}}">provider fails</a></div>{{end}}
{{else if and (or (eq .View "signup") (eq .View "reset")) (not (index .Values "code_sent"))}}
<input type="hidden" name="action" value="send_code">
<input type="hidden" name="purpose" value="{{.View}}">
<label for="email">Email Address</label><input type="email" id="email" name="email" value="{{index .Values "email"}}" required>
<div class="sub">We send a verification code to this address (the emulator's <a id="mailbox" href="{{.MailboxURL}}" target="_blank">mailbox</a> shows it).</div>
<button type="submit" id="emailVerificationControl_but_send_code">Send verification code</button>
{{else if eq .View "signup"}}
<input type="hidden" name="action" value="signup">
<input type="hidden" name="email" value="{{index .Values "email"}}">
<div class="sub" id="verificationSent">Verification code sent to {{index .Values "email"}}. Copy it to the box below.</div>
<label for="verificationCode">Verification code</label><input id="verificationCode" name="code" autocomplete="one-time-code" inputmode="numeric" required>
<label for="newPassword">New Password</label><input type="password" id="newPassword" name="password" autocomplete="new-password" required>
<label for="reenterPassword">Confirm New Password</label><input type="password" id="reenterPassword" name="password_confirm" autocomplete="new-password" required>
<label for="displayName">Display Name</label><input id="displayName" name="name" value="{{index .Values "name"}}">
<label for="givenName">Given Name</label><input id="givenName" name="given_name" value="{{index .Values "given_name"}}">
<label for="surname">Surname</label><input id="surname" name="family_name" value="{{index .Values "family_name"}}">
<button type="submit" id="continue">Create</button>
{{else if eq .View "reset"}}
<input type="hidden" name="action" value="reset">
<input type="hidden" name="email" value="{{index .Values "email"}}">
<div class="sub" id="verificationSent">Verification code sent to {{index .Values "email"}}. Copy it to the box below.</div>
<label for="verificationCode">Verification code</label><input id="verificationCode" name="code" autocomplete="one-time-code" inputmode="numeric" required>
<label for="newPassword">New Password</label><input type="password" id="newPassword" name="password" autocomplete="new-password" required>
<label for="reenterPassword">Confirm New Password</label><input type="password" id="reenterPassword" name="password_confirm" autocomplete="new-password" required>
<button type="submit" id="continue">Continue</button>
{{else if eq .View "edit"}}
<input type="hidden" name="action" value="edit">
<div class="sub">{{index .Values "email"}}</div>
<label for="displayName">Display Name</label><input id="displayName" name="name" value="{{index .Values "name"}}">
<label for="givenName">Given Name</label><input id="givenName" name="given_name" value="{{index .Values "given_name"}}">
<label for="surname">Surname</label><input id="surname" name="family_name" value="{{index .Values "family_name"}}">
<button type="submit" id="continue">Continue</button>
{{end}}
</form>
{{if ne .View "signin"}}<form method="get" action=""><a id="cancel" href="{{.CancelURL}}">Cancel</a></form>{{end}}
</div></body></html>{{end}}

{{define "mailbox"}}{{template "head" "Mailbox"}}
<div class="box" id="mailbox"><h1>Mailbox</h1>
<div class="sub">What {{.Tenant}}.onmicrosoft.com "sent", newest first: the verification codes of sign-up and password reset. No mail leaves this machine.</div>
<ol id="messages">{{range .Messages}}<li class="message" data-to="{{.To}}" data-purpose="{{.Purpose}}">To {{.To}} ({{.Purpose}}, {{.Sent.Format "15:04:05"}}): your code is <code class="verification-code">{{.Code}}</code></li>
{{else}}<li>No messages.</li>{{end}}</ol></div></body></html>{{end}}

{{define "error"}}{{template "head" "Sorry, but we're having trouble signing you in."}}
<div class="box"><h1>Sorry, but we're having trouble signing you in.</h1>
<p>We track these errors automatically, but if the problem persists feel free to contact us. In the meantime, please try again.</p>
<p class="error" id="errorCode">{{.Code}}</p><pre style="white-space:pre-wrap">{{.Description}}</pre></div></body></html>{{end}}

{{define "signed_out"}}{{template "head" "Signed out"}}
<div class="box"><h1>You have signed out.</h1><p>You are signed out of {{.Tenant}}.onmicrosoft.com.</p></div></body></html>{{end}}

{{define "front_channel"}}{{template "head" "Signing out"}}
<div class="box"><h1>Signing out</h1><p>You are being signed out of {{.Tenant}}.onmicrosoft.com and its applications.</p>
{{range .Frames}}<iframe class="front-channel-logout" src="{{.}}" style="display:none" title="sign-out"></iframe>
{{end}}{{if .Next}}<p><a id="continue" href="{{.Next}}">Continue</a></p>
<script>window.addEventListener("load", function () { location.replace(document.getElementById("continue").href) })</script>{{end}}</div></body></html>{{end}}

{{define "form_post"}}<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Working...</title></head>
<body onload="document.forms[0].submit()">
<form method="POST" action="{{.Action}}">
{{range .Params}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<noscript><p>Script is disabled. Click Submit to continue.</p><input type="submit" value="Submit"></noscript>
</form></body></html>{{end}}
`))

// pageText is the sign-in page's text in the first language of ui_locales
// that the emulator has: English, or French.
func pageText(uiLocales string) (string, map[string]string) {
	for _, tag := range strings.Fields(uiLocales) {
		if strings.HasPrefix(strings.ToLower(tag), "fr") {
			return "fr", map[string]string{"signin": "Se connecter", "email": "Adresse e-mail", "password": "Mot de passe", "forgot": "Mot de passe oublié ?"}
		}
	}
	return "en", map[string]string{"signin": "Sign in", "email": "Email Address", "password": "Password", "forgot": "Forgot your password?"}
}
