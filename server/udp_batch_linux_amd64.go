package server

const (
	sysRecvmmsg = 299
	sysSendmmsg = 307
)
