package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/connector-host/connector-host/host/config"
	"github.com/connector-host/connector-host/host/oauth"
	"github.com/connector-host/connector-host/host/router"
	"github.com/connector-host/connector-host/host/store"
	"github.com/connector-host/connector-host/internal/envelope"
	"github.com/connector-host/connector-host/sdk"
)

// DefaultClientSecretEnv is where `oauth login` and `oauth
// client-credentials` read the client secret unless told otherwise.
const DefaultClientSecretEnv = "CONNECTOR_OAUTH_CLIENT_SECRET" //nolint:gosec // the name of a variable, not a secret

func newOAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oauth",
		Short: "Store, list and revoke OAuth credentials kept by the host (credential_id)",
		Long: `The host keeps OAuth credentials for connectors that declare OAuth; a request then
names one with "credential_id" instead of carrying tokens. These commands create them
(login, client-credentials), list them and revoke them. See docs/oauth.md.`,
	}
	cmd.AddCommand(newOAuthLoginCmd(), newOAuthClientCredentialsCmd(), newOAuthListCmd(), newOAuthRevokeCmd())
	return cmd
}

// grantFlags are the flags of the commands that create a credential.
func grantFlags(cmd *cobra.Command) {
	cmd.Flags().String("credential-id", "", "id to store the credential under (required)")
	cmd.Flags().String("client-id", "", "OAuth client id (required)")
	cmd.Flags().String("client-secret-env", DefaultClientSecretEnv, "environment variable holding the client secret (read from stdin when unset)")
	cmd.Flags().String("scopes", "", "space-separated scopes (default: every scope the connector declares)")
	cmd.Flags().StringSlice("capabilities", nil, "request the declared scopes of these capabilities")
	cmd.Flags().String("settings", "", "connector settings as JSON (fill templated OAuth URLs, e.g. '{\"subdomain\":\"acme\"}')")
	_ = cmd.MarkFlagRequired("credential-id")
	_ = cmd.MarkFlagRequired("client-id")
}

// grantRequest builds the request envelope of a credential-creating
// capability from the flags.
func grantRequest(cmd *cobra.Command) (*envelope.Request, error) {
	id, _ := cmd.Flags().GetString("credential-id")
	clientID, _ := cmd.Flags().GetString("client-id")
	secretEnv, _ := cmd.Flags().GetString("client-secret-env")
	scopes, _ := cmd.Flags().GetString("scopes")
	caps, _ := cmd.Flags().GetStringSlice("capabilities")
	settings, _ := cmd.Flags().GetString("settings")
	secret, err := clientSecret(cmd, secretEnv)
	if err != nil {
		return nil, err
	}
	req := map[string]any{"client_id": clientID, "client_secret": secret}
	if f := strings.Fields(scopes); len(f) > 0 {
		req["scopes"] = f
	}
	if len(caps) > 0 {
		req["capabilities"] = caps
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	env := &envelope.Request{Request: body}
	env.CredentialID = id
	if settings != "" {
		var m map[string]any
		if err := json.Unmarshal([]byte(settings), &m); err != nil {
			return nil, fmt.Errorf("--settings: must be a JSON object: %w", err)
		}
		env.Settings = json.RawMessage(settings)
	}
	return env, nil
}

// clientSecret reads the client secret from the named environment
// variable, else one line of stdin. Never from a flag (shell history, ps).
func clientSecret(cmd *cobra.Command, env string) (string, error) {
	if env != "" {
		if v := os.Getenv(env); v != "" {
			return v, nil
		}
	}
	_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "client secret (%s is not set), then Enter: ", env)
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the client secret: %w", err)
	}
	_, _ = fmt.Fprintln(cmd.ErrOrStderr())
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return "", fmt.Errorf("no client secret: set %s or type it on stdin", env)
	}
	return secret, nil
}

// printFailure prints an error envelope and ends with exit status 1.
func printFailure(cmd *cobra.Command, f *router.Failure) error {
	body := envelope.MarshalError(envelope.NewErrorBody(f.AppID, f.Err, f.Status()))
	_, _ = fmt.Fprintln(cmd.OutOrStdout(), string(body))
	return exitCode(1)
}

func newOAuthLoginCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login APP --credential-id ID --client-id CLIENT_ID",
		Short: "Run the authorization code flow and store the credential",
		Long: `login starts the connector, serves the OAuth callback on the listen address, prints the
authorization URL and waits until the provider redirects back (or --timeout). The redirect
URI to register at the provider is <public_url>/v1/oauth/callback (default
http://<listen>/v1/oauth/callback). The listen address must be free: stop a running
'connector-host serve' first, or start the flow through its API instead.`,
		Example: `  CONNECTOR_OAUTH_CLIENT_SECRET=... connector-host oauth login acme --credential-id prod --client-id abc123`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			appID := args[0]
			env, err := grantRequest(cmd)
			if err != nil {
				return err
			}
			timeout, _ := cmd.Flags().GetDuration("timeout")
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				return fmt.Errorf("listen on %s for the OAuth callback: %w (is 'connector-host serve' running? stop it or use its API)", cfg.Listen, err)
			}
			h, err := startOne(cmd, appID)
			if err != nil {
				_ = ln.Close()
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			serveCtx, stopServe := context.WithCancel(ctx)
			served := make(chan error, 1)
			go func() { served <- h.Serve(serveCtx, ln) }()
			defer func() {
				stopServe()
				<-served //nolint:errcheck // waits for the stop asked for above; a failed callback server already shows as no callback
			}()
			wait := h.OAuth().AwaitLogin(appID, env.CredentialID)
			res, f := h.Router().Invoke(ctx, &router.Request{AppID: appID, Capability: sdk.GetAuthorizationURL, Envelope: env, RequestID: "cli-oauth-login"})
			if f != nil {
				return printFailure(cmd, f)
			}
			var au oauth.AuthorizationURL
			if err := json.Unmarshal(res.Response, &au); err != nil {
				return fmt.Errorf("get_authorization_url answered %s: %w", res.Response, err)
			}
			out := cmd.OutOrStdout()
			_, _ = fmt.Fprintf(out, "Open this URL in a browser and authorize:\n\n  %s\n\n", au.AuthorizationURL)
			_, _ = fmt.Fprintf(out, "Waiting up to %s for the provider to redirect to %s ...\n", timeout, h.OAuth().RedirectURI())
			waitCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			lr, err := wait(waitCtx)
			if err != nil {
				return fmt.Errorf("no callback arrived: %w", err)
			}
			if lr.Err != nil {
				return printFailure(cmd, &router.Failure{AppID: lr.AppID, Err: lr.Err})
			}
			printCredential(out, lr.Credential)
			return nil
		},
	}
	grantFlags(cmd)
	cmd.Flags().String("listen", "", "address to serve the callback on (default 127.0.0.1:8080)")
	cmd.Flags().Duration("timeout", oauth.DefaultStateTTL, "how long to wait for the callback")
	return cmd
}

func newOAuthClientCredentialsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "client-credentials APP --credential-id ID --client-id CLIENT_ID",
		Short:   "Get a token with the client credentials grant and store the credential",
		Example: `  CONNECTOR_OAUTH_CLIENT_SECRET=... connector-host oauth client-credentials acme --credential-id m2m --client-id abc123`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			appID := args[0]
			env, err := grantRequest(cmd)
			if err != nil {
				return err
			}
			h, err := startOne(cmd, appID)
			if err != nil {
				return err
			}
			defer h.Close()
			ctx, stop := signalContext()
			defer stop()
			if _, f := h.Router().Invoke(ctx, &router.Request{AppID: appID, Capability: sdk.HandleClientCredentialsRequest, Envelope: env, RequestID: "cli-oauth-cc"}); f != nil {
				return printFailure(cmd, f)
			}
			c, err := h.OAuth().Store().Credential(ctx, appID, env.CredentialID)
			if err != nil {
				return err
			}
			printCredential(cmd.OutOrStdout(), c)
			return nil
		},
	}
	grantFlags(cmd)
	return cmd
}

func printCredential(w io.Writer, c *store.Credential) {
	exp := "unknown"
	if !c.Expiry.IsZero() {
		exp = c.Expiry.UTC().Format(time.RFC3339)
	}
	_, _ = fmt.Fprintf(w, "Stored credential %q for %s (%s, scopes %q, access token expires %s).\n", c.ID, c.AppID, c.Flow, strings.Join(c.Scopes, " "), exp)
	_, _ = fmt.Fprintf(w, "Use it with: {\"credential_id\": %q, \"request\": {...}}\n", c.ID)
}

// openStore opens the host's state store without starting any plugin.
func openStore(cmd *cobra.Command) (store.Store, config.Config, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, cfg, err
	}
	st, err := store.Open(cfg.DataDir, cfg.EncryptionKey)
	return st, cfg, err
}

func newOAuthListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list [APP]",
		Short: "List stored credentials (never their secrets)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openStore(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }() // each write commits (synchronous=FULL) before Close
			appID := ""
			if len(args) == 1 {
				appID = args[0]
			}
			list, err := st.Credentials(cmd.Context(), appID)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			_, _ = fmt.Fprintln(tw, "APP_ID\tCREDENTIAL_ID\tFLOW\tSTATUS\tCLIENT_ID\tSCOPES\tEXPIRES\tUPDATED")
			for _, c := range list {
				exp := "-"
				if !c.Expiry.IsZero() {
					exp = c.Expiry.UTC().Format(time.RFC3339)
				}
				scopes := strings.Join(c.Scopes, " ")
				if scopes == "" {
					scopes = "-"
				}
				_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.AppID, c.ID, c.Flow, c.Status, c.ClientID, scopes, exp, c.UpdatedAt.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

func newOAuthRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke APP --credential-id ID",
		Short: "Mark a stored credential revoked and erase its secrets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("credential-id")
			st, _, err := openStore(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }() // each write commits (synchronous=FULL) before Close
			m, err := oauth.New(oauth.Options{Store: st})
			if err != nil {
				return err
			}
			if err := m.Revoke(cmd.Context(), args[0], id); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no credential %q is stored for %s", id, args[0])
				}
				return err
			}
			_, _ = fmt.Fprintf(cmd.OutOrStdout(), "Revoked credential %q of %s; calls naming it now fail with creds_revoked.\n", id, args[0])
			return nil
		},
	}
	cmd.Flags().String("credential-id", "", "the credential to revoke (required)")
	_ = cmd.MarkFlagRequired("credential-id")
	return cmd
}
