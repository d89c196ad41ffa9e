package client

// PendingCount returns the number of requests waiting for a response, for
// the tests of the client package.
func PendingCount(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// DropConn ends the connection in use as a failed write does, for the
// tests of the client package.
func DropConn(c *Client) {
	c.mu.Lock()
	k := c.cur
	c.mu.Unlock()
	if k != nil {
		c.connEnded(k, ErrConnectionLost, 0)
	}
}
