// Command stoa-emulator runs the local Stoa emulator until it is
// interrupted:
//
//	stoa-emulator [--listen 127.0.0.1:8092] [--objects 25] [--rows-per-object 150] [--row-group-rows 40]
//
// It serves the example product of the Python client's documentation
// (product_group_name exampleGroup, product_name exampleProduct, workspace
// apps, owner_id owner123, version 1.0) with the given shape, and a small
// one in workspace cart (owner456). The credentials it accepts are read
// from the environment so that they never appear in a process listing:
// STOA_EMAIL, STOA_PASSWORD, STOA_CLIENT_ID, STOA_CLIENT_SECRET (the
// emulator's defaults when unset). The auth and API base URLs to put in the
// stoa connector's settings are printed on start.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8092", "address to listen on")
	objects := flag.Int("objects", 25, "objects of the example product")
	rows := flag.Int("rows-per-object", 150, "rows per object")
	groupRows := flag.Int("row-group-rows", 40, "rows per Parquet row group")
	flag.Parse()

	products := stoaemu.DefaultProducts()
	products[0].Objects, products[0].RowsPerObject, products[0].RowGroupRows = *objects, *rows, *groupRows
	srv := stoaemu.New(stoaemu.Options{
		Addr:         *listen,
		Email:        os.Getenv("STOA_EMAIL"),
		Password:     os.Getenv("STOA_PASSWORD"),
		ClientID:     os.Getenv("STOA_CLIENT_ID"),
		ClientSecret: os.Getenv("STOA_CLIENT_SECRET"),
		Products:     products,
	})
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "stoa-emulator:", err)
		os.Exit(1)
	}
	fmt.Printf("stoa-emulator: settings {\"auth_base_url\": %q, \"api_base_url\": %q}\n", srv.AuthURL(), srv.APIURL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.Close()
	st := srv.Stats()
	fmt.Printf("stoa-emulator: stopped after %d logins, %d token requests, %d orders, %d signs, %d downloads\n",
		st.Logins, st.TokenRequests, st.Orders, st.Signs, st.ObjectGets)
}
