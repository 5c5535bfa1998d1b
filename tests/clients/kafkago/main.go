// kafka-go 0.2.1 (Debian 12's segmentio/kafka-go: Produce v2 and Fetch v2 with magic-1
// messages, classic consumer groups) against Rafka, with its default settings.
// Usage: kafkago-check BROKER_ADDR TOPIC (the topic exists, one partition)
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

func must(what string, err error) {
	if err != nil {
		fmt.Printf("FAIL %s: %v\n", what, err)
		os.Exit(1)
	}
}

// readGroup reads n messages as a member of group "kafkago-group", committing each.
func readGroup(addr, topic string, n int) []string {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "kafkago-group", Topic: topic})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		must("fetch message", err)
		got = append(got, fmt.Sprintf("%s=%s@%d", m.Key, m.Value, m.Time.Unix()))
		must("commit", r.CommitMessages(ctx, m))
	}
	return got
}

func write(addr, topic, prefix string, n int) []string {
	w := kafka.NewWriter(kafka.WriterConfig{Brokers: []string{addr}, Topic: topic})
	defer w.Close()
	var msgs []kafka.Message
	var want []string
	for i := 0; i < n; i++ {
		ts := time.Unix(1700000000+int64(i), 0)
		k, v := fmt.Sprintf("%s-k%d", prefix, i), fmt.Sprintf("%s-v%d", prefix, i)
		msgs = append(msgs, kafka.Message{Key: []byte(k), Value: []byte(v), Time: ts})
		want = append(want, fmt.Sprintf("%s=%s@%d", k, v, ts.Unix()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must("write", w.WriteMessages(ctx, msgs...))
	return want
}

func same(name string, want, got []string) bool {
	ok := fmt.Sprint(want) == fmt.Sprint(got)
	if ok {
		fmt.Printf("ok   %s\n", name)
	} else {
		fmt.Printf("FAIL %s: want %v got %v\n", name, want, got)
	}
	return ok
}

func main() {
	addr, topic := os.Args[1], os.Args[2]
	ok := same("group reads what the writer wrote (keys, values, timestamps)",
		write(addr, topic, "a", 10), readGroup(addr, topic, 10))
	// The group resumes after its commits: the next member reads only the new messages.
	ok = same("group resumes from its committed offset", write(addr, topic, "b", 5),
		readGroup(addr, topic, 5)) && ok
	if !ok {
		os.Exit(1)
	}
	fmt.Println("kafka-go: all passed")
}
