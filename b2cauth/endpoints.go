package b2cauth

import (
	"encoding/json"
	"errors"
	"net/http"
)

// endpoint serves /.auth/*; handled is false for paths that are not ours.
func (h *Handler) endpoint(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/.auth/login", "/.auth/login/b2c", "/.auth/login/aad":
		return true, h.startSignIn(w, r, h.Policy, safeReturnURL(q.Get("post_login_redirect_uri")), q)
	case "/.auth/login/reset":
		if h.PasswordResetPolicy == "" {
			return true, fail(w, r, http.StatusNotFound, "Not available", "No password reset policy is configured.", errors.New("password_reset_policy not set"))
		}
		return true, h.startSignIn(w, r, h.PasswordResetPolicy, safeReturnURL(q.Get("post_login_redirect_uri")), q)
	case "/.auth/login/profile":
		if h.ProfileEditPolicy == "" {
			return true, fail(w, r, http.StatusNotFound, "Not available", "No profile edit policy is configured.", errors.New("profile_edit_policy not set"))
		}
		return true, h.startSignIn(w, r, h.ProfileEditPolicy, safeReturnURL(q.Get("post_login_redirect_uri")), q)
	case "/.auth/logout":
		return true, h.logout(w, r)
	case frontChannelPath:
		return true, h.frontChannelLogout(w, r)
	case "/.auth/me":
		return true, h.me(w, r)
	case "/.auth/refresh":
		return true, h.refresh(w, r)
	case "/.auth/keys":
		return true, h.keys(w, r)
	}
	return false, nil
}

// me answers /.auth/me: the user in App Service's shape, or 401.
func (h *Handler) me(w http.ResponseWriter, r *http.Request) error {
	id, err := h.authenticate(w, r, h.now())
	if err != nil {
		return h.bearerFailure(w, r, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if id == nil {
		w.WriteHeader(http.StatusUnauthorized)
		_, err := w.Write([]byte(`{"status":401,"error":"not signed in"}` + "\n"))
		return err
	}
	return json.NewEncoder(w).Encode(id.me())
}
