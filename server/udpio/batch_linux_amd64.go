package udpio

const (
	sysRecvmmsg = 299
	sysSendmmsg = 307
)
